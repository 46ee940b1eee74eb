"""Baselines: closed-form fits recover known relations; as trainers they go through the normal model path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthunet.architectures.baselines import VoxelRegression, gaussian_smooth, polynomial_terms
from synthunet.prediction.checkpoints import load_trained_model
from synthunet.training.baseline_fitting import fit_identity, fit_voxel_regression
from synthunet.training.cli import main as train_main
from test_training_end_to_end import DATASET, _plan_and_preprocess
from test_training_fixtures import single_thread  # noqa: F401 (fixture)


def _cases(relation, n=3, shape=(14, 15, 16), seed=0, channels=3):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        x = rng.random((channels, *shape)).astype(np.float32)
        cases.append((x, relation(x).astype(np.float32), np.ones(shape, bool)))
    return cases


def test_polynomial_terms_count():
    assert len(polynomial_terms(9, 2)) == 1 + 9 + 45
    assert polynomial_terms(2, 2) == [(), (0,), (1,), (0, 0), (0, 1), (1, 1)]


def test_gaussian_smoothing_matches_scipy_inside():
    from scipy.ndimage import gaussian_filter
    x = np.random.default_rng(1).random((20, 21, 22)).astype(np.float32)
    ours = gaussian_smooth(torch.from_numpy(x)[None, None], [1.5, 1.0, 2.0])[0, 0].numpy()
    reference = gaussian_filter(x.astype(np.float64), [1.5, 1.0, 2.0], mode="constant", truncate=3.0)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_identity_picks_the_related_channel():
    model = fit_identity(_cases(lambda x: 2.5 * x[2] + 0.3), in_channels=3)
    assert int(model.channel) == 2
    assert float(model.scale) == pytest.approx(2.5, abs=1e-4) and float(model.offset) == pytest.approx(0.3, abs=1e-4)


def test_regression_recovers_a_quadratic_relation():
    relation = lambda x: 0.7 * x[0] ** 2 - 0.4 * x[0] * x[1] + 0.2 * x[2] + 0.1  # noqa: E731
    cases = _cases(relation)
    model = fit_voxel_regression(VoxelRegression(3, 3, sigmas_voxels=[[1, 1, 1], [2, 2, 2]]), cases, ridge=1e-8)
    test_x, test_y, _ = _cases(relation, n=1, seed=5)[0]
    prediction = model(torch.from_numpy(test_x)[None])[0, 0].numpy()
    assert np.abs(prediction - test_y).max() < 1e-3


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("trainer", ["Baseline_Identity", "Baseline_VoxelRegression"])
def test_baseline_trainer_model_folder(tmp_path, monkeypatch, trainer):
    _plan_and_preprocess(tmp_path, monkeypatch)
    assert train_main(["992", "3d_fullres", "T1C", "0", "-tr", trainer, "--device", "cpu"]) == 0
    model_folder = tmp_path / "results" / DATASET / f"{trainer}__synthUNetPlans__3d_fullres__T1C"
    summary = json.loads((model_folder / "fold_0" / "validation" / "summary.json").read_text())
    assert summary["targets"] == ["T1C"]
    network, info, plans = load_trained_model(model_folder, 0)
    expected = {"Baseline_Identity": "identity_scale", "Baseline_VoxelRegression": "voxel_regression"}[trainer]
    assert plans["configurations"]["3d_fullres"]["architecture"]["name"] == expected
    assert info["trainer"] == trainer
    # a second fold may pick another input channel: it lives in the fold's checkpoint, not in plans.json
    assert train_main(["992", "3d_fullres", "T1C", "1", "-tr", trainer, "--device", "cpu"]) == 0
    load_trained_model(model_folder, 1)
    assert train_main(["992", "2.5d", "T1C", "0", "-tr", trainer, "--device", "cpu"]) != 0


def test_prior_network_starts_at_the_regression_and_round_trips():
    from synthunet.architectures.model_network import build_synthesis_network
    from synthunet.architectures.model_network import PriorResidual
    from test_training_fixtures import tiny_architecture

    architecture = dict(tiny_architecture(3), prior="voxel_regression")
    config = {"dimension": 3, "spacing": [2.0, 2.0, 2.0], "architecture": architecture}
    network = build_synthesis_network(config, ["T1N", "T2W"])
    assert isinstance(network, PriorResidual)
    x = torch.rand(1, 2, 16, 16, 16)
    relation = lambda v: 0.5 * v[0] + 0.2 * v[1] ** 2  # noqa: E731
    fit_voxel_regression(network.prior, _cases(relation, n=2, channels=2), ridge=1e-8)
    with torch.no_grad():
        torch.testing.assert_close(network(x), network.prior(x))  # zero-initialised output layer
    rebuilt = build_synthesis_network(config, ["T1N", "T2W"])
    rebuilt.load_state_dict(network.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), network(x))


def test_regression_is_zero_where_every_input_is_zero():
    relation = lambda x: 0.3 * x[0] + 0.5  # noqa: E731  (a constant term the background must not get)
    model = fit_voxel_regression(VoxelRegression(3, 3, sigmas_voxels=[[1, 1, 1], [2, 2, 2]]), _cases(relation))
    x = torch.rand(1, 3, 12, 12, 12)
    x[..., :4] = 0  # outside the brain
    output = model(x)[0, 0]
    assert (output[..., :4] == 0).all() and (output[..., 6:].abs() > 0.1).all()


@pytest.mark.usefixtures("single_thread")
def test_trainer_fits_the_prior_and_turns_intensity_augmentation_off(tmp_path, monkeypatch):
    from synthunet.training.experiment import Experiment
    from synthunet.architectures.model_network import PriorResidual
    from synthunet.training.trainers import get_trainer_class
    from test_training_fixtures import prepare, tiny_plans

    plans = tiny_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["prior"] = "voxel_regression"
    prepare(tmp_path, monkeypatch, plans=plans)
    trainer = get_trainer_class("SynthTrainer")(Experiment.resolve(990, "3d_fullres", "T1C", 0), device="cpu",
                                                num_epochs=1, final_validation=False)
    trainer.initialize()
    assert isinstance(trainer.network, PriorResidual)
    assert float(trainer.network.prior.coefficients.abs().sum()) > 0  # fitted on the training cases
    params = trainer.augmentation
    assert params.p_gamma == params.p_contrast == params.p_brightness == params.p_noise == 0
    assert params.p_rotation > 0  # spatial augmentation stays
    trainer.close()
