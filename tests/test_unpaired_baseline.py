"""The unpaired closed-form baselines (issue 19): histogram matching learned from unpaired cases, against
scikit-image's match_histograms, a known monotone mapping, and the rule that no case gives both sides (for tissue
matching too; its own tests are in test_tissue_matching.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.exposure import match_histograms

from synthunet.architectures.baselines import QuantileMapping
from synthunet.training.baseline_fitting import fit_quantile_mapping
from test_training_fixtures import prepare, single_thread, tiny_plans  # noqa: F401  (a fixture)


def smooth(shape, seed, sigma=2.0):
    field = ndimage.gaussian_filter(np.random.RandomState(seed).normal(size=shape), sigma)
    return (field - field.mean()) / field.std()


def apply(model: QuantileMapping, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(image[None, None].astype(np.float32)))[0, 0].numpy()


def test_one_pair_matches_scikit_image_match_histograms():
    shape = (24, 26, 22)
    brain = np.ones(shape, bool)
    brain[:3] = False
    source = np.exp(0.5 * smooth(shape, 0))                     # skewed
    reference = 2.0 - np.tanh(smooth(shape, 1))                 # another shape of histogram
    model = fit_quantile_mapping([(source, brain)], [(reference, brain)], in_channels=1, num_levels=1001)
    ours = apply(model, source)[brain]
    theirs = match_histograms(source[brain], reference[brain])
    inside = (source[brain] > np.percentile(source[brain], 1)) & (source[brain] < np.percentile(source[brain], 99))
    spread = np.ptp(reference[brain])
    assert np.abs(ours - theirs)[inside].max() < 0.01 * spread
    assert np.abs(ours - theirs).mean() < 0.003 * spread


def test_recovers_a_monotone_mapping_from_unpaired_cases():
    shape = (32, 32, 32)
    brain = np.ones(shape, bool)
    mapping = lambda x: 0.3 * x ** 3 + x + 1.0                 # noqa: E731  monotone, not linear
    sources = [(smooth(shape, seed, 1.0), brain) for seed in range(0, 12)]
    targets = [(mapping(smooth(shape, seed, 1.0)), brain) for seed in range(100, 112)]   # other cases
    model = fit_quantile_mapping(sources, targets, in_channels=1)
    new = smooth(shape, 999, 1.0)
    # in the tails the 1 %-spaced levels are far apart and the map is linear between them
    inside = (new > np.percentile(new, 2.5)) & (new < np.percentile(new, 97.5))
    error = np.abs(apply(model, new) - mapping(new))[inside]
    assert error.max() < 0.02 * np.ptp(mapping(new)[inside]) and np.median(error) < 0.002 * np.ptp(mapping(new))
    identity = fit_quantile_mapping(sources, sources, in_channels=1)         # a paired-free check of the fit
    assert np.abs(apply(identity, new) - new)[inside].max() < 1e-3


def test_extends_the_outer_segments_linearly():
    model = QuantileMapping(3, 1, num_levels=3)
    model.source_levels.copy_(torch.tensor([0.0, 1.0, 2.0]))
    model.target_levels.copy_(torch.tensor([10.0, 12.0, 13.0]))
    out = apply(model, np.array([[[-1.0, 0.5, 1.5, 4.0]]]))
    np.testing.assert_allclose(out.ravel(), [8.0, 11.0, 12.5, 15.0], atol=1e-5)


def record_channel_reads(monkeypatch) -> dict[int, list[str]]:
    """The cases each channel is read from by the unpaired fit (synthunet.training.prior.channel_images)."""
    from synthunet.training import prior

    reads: dict[int, list[str]] = {}
    original = prior.channel_images

    def recording(experiment, cases, channel):
        reads.setdefault(channel, []).extend(cases)
        return original(experiment, cases, channel)

    monkeypatch.setattr(prior, "channel_images", recording)
    return reads


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("trainer_name", ["Baseline_HistogramMatching", "Baseline_TissueMatching"])
def test_trainer_reads_source_and_target_from_disjoint_cases(tmp_path, monkeypatch, trainer_name):
    from synthunet.architectures.model_network import TISSUE_LEVELS
    from synthunet.prediction.model_folder import ModelFolder, load_network
    from synthunet.training.experiment import Experiment
    from synthunet.training.trainers import get_trainer_class

    prepare(tmp_path, monkeypatch, n_cases=8, plans=tiny_plans())
    reads = record_channel_reads(monkeypatch)
    experiment = Experiment.resolve(990, "3d_fullres", "T2W", 0, trainer_name=trainer_name, inputs=["T2F"])
    get_trainer_class(trainer_name)(experiment, device="cpu", final_validation=False, unpaired=True).run_training()
    train_cases, _ = experiment.fold_cases()
    assert set(reads) == {experiment.input_indices[0], experiment.target_index}
    source, target = reads[experiment.input_indices[0]], reads[experiment.target_index]
    assert source and target and not set(source) & set(target)
    assert set(source) | set(target) == set(train_cases)
    network = load_network(ModelFolder.load(experiment.model_folder), 0, "checkpoint_final.pth", "cpu")
    assert isinstance(network, QuantileMapping)
    architecture = json.loads((experiment.model_folder / "plans.json").read_text())["configurations"]["3d_fullres"][
        "architecture"]
    if trainer_name == "Baseline_HistogramMatching":  # increasing; tissue matching need not be
        assert torch.all(torch.diff(network.source_levels) > 0) and torch.all(torch.diff(network.target_levels) > 0)
        # as written before tissue matching existed, so that such a model folder still takes new folds
        assert architecture == {"name": "quantile_mapping", "kwargs": {}}
    else:
        assert len(network.source_levels) == TISSUE_LEVELS and torch.all(torch.diff(network.source_levels) > 0)


def test_needs_exactly_one_input(tmp_path, monkeypatch, capsys):
    from synthunet.training.cli import main

    prepare(tmp_path, monkeypatch, plans=tiny_plans())
    assert main(["990", "3d_fullres", "T2W", "0", "-tr", "Baseline_HistogramMatching", "--unpaired"]) == 2
    assert "pass --inputs SOURCE" in capsys.readouterr().err
