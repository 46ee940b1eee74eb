"""The 2.5D prior (a 2D voxel regression on the central slices) and the planner's prior rule for every paired
synthesis architecture on CPU (issue 19, item 3: seed architectures on the same prior as the U-Net)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from synthunet.architectures.model_network import CentralSlicePrior, PriorResidual, build_prior, build_synthesis_network
from synthunet.planning.experiment import plans_for_fingerprint
from synthunet.planning.timing import CpuSpeed
from synthunet.training.prior import fit_slice_prior
from test_training_fixtures import single_thread  # noqa: F401 (fixture)

SHAPE = (12, 14, 16)


def _in_plane_relation(volume: np.ndarray, axis: int) -> np.ndarray:
    """A target that depends on scipy's in-plane (2D) Gaussian mean of channel 1 at sigma 1 voxel."""
    sigmas = [0.0 if a == axis else 1.0 for a in range(3)]
    local = gaussian_filter(volume[1].astype(np.float64), sigmas, mode="constant", truncate=3.0)
    return 0.6 * volume[0] + 0.8 * local ** 2 - 0.3 * volume[0] * local + 0.1


def _cases(axis: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    volumes = [rng.random((2, *SHAPE)).astype(np.float32) + 0.1 for _ in range(n)]
    return [(v, _in_plane_relation(v, axis).astype(np.float32), np.ones(SHAPE, bool)) for v in volumes]


def _stacks(volume: np.ndarray, axis: int, num_slices: int) -> tuple[torch.Tensor, list[int]]:
    """Every full k-slice stack along ``axis``, channels ``i * k + j`` as the 2.5D sampler builds them."""
    moved = np.moveaxis(volume, axis + 1, 1)                           # (C, N, A, B)
    half = num_slices // 2
    centres = list(range(half, moved.shape[1] - half))
    stacks = [moved[:, c - half:c + half + 1].reshape(-1, *moved.shape[2:]) for c in centres]
    return torch.from_numpy(np.stack(stacks)), centres


@pytest.mark.parametrize("axis", [0, 2])
def test_slice_prior_learns_an_in_plane_relation_along_its_axis(axis):
    config = {"dimension": 2, "num_slices": 3, "slicing_axes": [axis], "spacing": [2.0, 2.0, 2.0],
              "architecture": {"name": "unet"}}
    prior = build_prior("voxel_regression", config, num_inputs=2)
    assert isinstance(prior, CentralSlicePrior) and prior.channels == [1, 4] and prior.slice_axis == axis
    assert prior.slice_model.sigmas_voxels == [[1.0, 1.0], [3.0, 3.0]]  # 2 and 6 mm at 2 mm in-plane
    fit_slice_prior(prior, iter(_cases(axis, n=3, seed=0)), ridge=1e-8)
    test_volume, test_target, _ = _cases(axis, n=1, seed=7)[0]
    stacks, centres = _stacks(test_volume, axis, 3)
    with torch.no_grad():
        predicted = prior(stacks)[:, 0].numpy()
    expected = np.moveaxis(test_target, axis, 0)[centres]
    np.testing.assert_allclose(predicted, expected, atol=2e-3)


def test_slice_prior_under_a_network_starts_at_the_prior_and_round_trips():
    from test_training_fixtures import tiny_architecture

    config = {"dimension": 2, "num_slices": 3, "slicing_axes": [0, 1, 2], "spacing": [1.0, 1.0, 1.0],
              "architecture": dict(tiny_architecture(2), prior="voxel_regression")}
    network = build_synthesis_network(config, ["T1N", "T2W"], num_slices=3)
    assert isinstance(network, PriorResidual) and isinstance(network.prior, CentralSlicePrior)
    fit_slice_prior(network.prior, iter(_cases(0, n=2, seed=1)))
    x = torch.rand(2, 6, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(network(x), network.prior(x))  # zero-initialised output layer
        assert network.prior(x).abs().mean() > 0.1
        rebuilt = build_synthesis_network(config, ["T1N", "T2W"], num_slices=3)
        rebuilt.load_state_dict(network.state_dict())
        torch.testing.assert_close(rebuilt(x), network(x))


FINGERPRINT = {"dataset_name": "Dataset998_Prior", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
               "label_values": [0, 1, 2, 3], "spacings": [[2.0, 2.0, 2.0]] * 10,
               "shapes_after_cropping": [[60 + i % 3, 70, 62] for i in range(10)]}


@pytest.mark.parametrize("architecture", ["unet", "hrfcn", "dilated_fcn", "unet25d_brasyn", "rrdb"])
def test_cpu_plans_put_every_paired_architecture_on_the_prior(architecture):
    for device in ("cpu", "cuda"):
        plans = plans_for_fingerprint(FINGERPRINT, device=device, configurations=["3d_fullres", "2.5d"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), architecture=architecture)
        for block in plans["configurations"].values():
            assert (block["architecture"].get("prior") == "voxel_regression") == (device == "cpu")


def test_unpaired_angan_plans_get_no_regression_prior_but_unpaired_tissue_matching():
    for device in ("cpu", "cuda"):
        plans = plans_for_fingerprint(FINGERPRINT, device=device, configurations=["2.5d"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), architecture="angan", gan=True)
        architecture = plans["configurations"]["2.5d"]["architecture"]
        assert architecture["name"] == "angan" and architecture["prior"] == "tissue_matched_input"


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("configuration,prior", [("2.5d", "voxel_regression"), ("2.5d", "matched_input"),
                                                 ("3d_fullres", "matched_input")])
def test_trainer_fits_the_planned_prior(tmp_path, monkeypatch, configuration, prior):
    from synthunet.architectures.baselines import QuantileMapping, VoxelRegression
    from synthunet.training.experiment import Experiment
    from synthunet.training.trainers import get_trainer_class
    from test_training_fixtures import prepare, tiny_plans

    plans = tiny_plans()
    plans["configurations"][configuration]["architecture"]["prior"] = prior
    prepare(tmp_path, monkeypatch, plans=plans)
    trainer = get_trainer_class("SynthTrainer")(Experiment.resolve(990, configuration, "T1C", 0), device="cpu",
                                                num_epochs=1, final_validation=False)
    trainer.initialize()
    assert isinstance(trainer.network, PriorResidual)
    model = trainer.network.prior
    if configuration == "2.5d":
        assert isinstance(model, CentralSlicePrior)
        model = model.slice_model
    if prior == "matched_input":
        # fake_case: T1C = clip(1.2 * T1N + 0.4 * enhancing); the best single input is T1N or T2W (= 1 - T1N)
        assert isinstance(model, QuantileMapping) and int(model.channel) in (0, 1)
        # the levels are the mean brain quantiles (0.5-99.5 %) of that input and of the target over the training
        # cases, computed here with numpy
        from synthunet.preprocessing import load_case
        experiment = trainer.experiment
        percents = np.linspace(0.5, 99.5, len(model.source_levels))
        quantiles = {"input": [], "target": []}
        for case in experiment.fold_cases()[0]:
            data, seg, _ = load_case(experiment.data_folder, case)
            brain = np.asarray(seg[0]) >= 0
            channel = experiment.input_indices[int(model.channel)]
            quantiles["input"].append(np.percentile(np.asarray(data[channel], np.float64)[brain], percents))
            quantiles["target"].append(np.percentile(np.asarray(data[experiment.target_index], np.float64)[brain],
                                                     percents))
        np.testing.assert_allclose(model.source_levels.numpy(), np.mean(quantiles["input"], axis=0), atol=1e-4)
        np.testing.assert_allclose(model.target_levels.numpy(), np.mean(quantiles["target"], axis=0), atol=1e-4)
    else:
        assert isinstance(model, VoxelRegression) and float(model.coefficients.abs().sum()) > 0
    assert trainer.augmentation.p_gamma == 0  # the prior turns intensity augmentation off
    trainer.close()


def test_planned_prior_is_the_input_for_super_resolution_datasets():
    from synthunet.planning.configuration import planned_prior

    assert planned_prior(["T2F_LR", "T2F"]) == "matched_input"
    assert planned_prior(["T1N", "T1C", "T2W", "T2F"]) == "voxel_regression"
    assert planned_prior(["T2F_LR", "T1C"]) == "voxel_regression"  # no target with its low-resolution copy
