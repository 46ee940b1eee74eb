"""Super-resolution as a synthesis task: the degradation, synth_make_sr_dataset, the rrdb generator, the SRGAN
recipes and benchmarks/super_resolution.py (tiny volumes)."""
from __future__ import annotations

import json
import re
from math import prod

import numpy as np
import pytest
import torch

from synthetic_raw import make_tiny_raw_dataset
from test_architectures_seed import assert_trains_and_matches_layer_model
from synthunet.architectures import build_network
from synthunet.dataset.image_io import read_image
from synthunet.dataset.super_resolution import (Degradation, case_rng, degrade, kspace_truncation, thick_slices,
                                                to_high_resolution_grid)
from synthunet.dataset.validate import validate_dataset
from synthunet.planning import plans_for_fingerprint
from synthunet.planning.configuration import architecture_topology, build_architecture
from synthunet.planning.timing import CpuSpeed
from synthunet.planning.training_plan import MIN_CPU_STEPS, step_time_for_min_steps
from test_benchmark_scripts import MEAN_STD, NUMBER, load, table_rows
from test_training_fixtures import prepare, seed_everything, single_thread, tiny_plans  # noqa: F401 (fixture)

AXIS_INDEX = {"z": 0, "y": 1, "x": 2}


def high_frequency_fraction(volume: np.ndarray, axis: int, factor: int) -> float:
    """Share of the (mean-free) energy at angular frequencies above pi / factor along ``axis``."""
    volume = volume - volume.mean()
    power = np.abs(np.fft.fft(volume, axis=axis)) ** 2
    omega = np.abs(2 * np.pi * np.fft.fftfreq(volume.shape[axis]))
    shape = [1] * volume.ndim
    shape[axis] = -1
    return float((power * (omega > np.pi / factor + 1e-9).reshape(shape)).sum() / power.sum())


# ------------------------------------------------------------------------------------------------ degradation


@pytest.mark.parametrize("mode", ["thick", "kspace"])
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_degradation_axis_factor_and_frequency_content(mode, axis):
    volume = np.random.default_rng(0).normal(size=(24, 28, 32))
    factor = 4
    degraded = degrade(volume, Degradation(factor=factor, axis=axis, mode=mode, noise=0.0))
    index = AXIS_INDEX[axis]
    expected = list(volume.shape)
    expected[index] = volume.shape[index] // factor
    assert list(degraded.low_resolution.samples.shape) == expected
    assert degraded.high_resolution_grid.shape == volume.shape and degraded.high_resolution_grid.dtype == np.float32
    for other in range(3):
        ratio = (high_frequency_fraction(degraded.high_resolution_grid, other, factor)
                 / high_frequency_fraction(volume, other, factor))
        if other == index:  # the energy above pi / factor is (almost) gone along the degraded axis ...
            assert ratio < 0.15, (axis, mode, other, ratio)
        else:  # ... and the spectrum's shape is untouched along the others
            assert 0.9 < ratio < 1.1, (axis, mode, other, ratio)


def test_thick_slices_are_block_means_at_the_block_centres():
    ramp = np.broadcast_to(np.arange(26, dtype=float)[:, None, None], (26, 3, 4)).copy()  # 26 = 6 x 4 + 2
    low = thick_slices(ramp, 4, 0)
    # the 2 left-over slices are split between both ends: blocks start at slice 1
    assert low.samples.shape == (6, 3, 4) and low.first == 1 + 1.5 and low.step == 4
    np.testing.assert_allclose(low.samples[:, 0, 0], [2.5, 6.5, 10.5, 14.5, 18.5, 22.5])
    # a ramp sampled at the block centres comes back where the spline's boundary condition has decayed
    # (by 0.27 per sample away from the ends): the block centres are where they should be
    long_ramp = np.broadcast_to(np.arange(66, dtype=float)[:, None, None], (66, 2, 2))  # 16 blocks from slice 1
    back = to_high_resolution_grid(thick_slices(long_ramp, 4, 0), 66)
    np.testing.assert_allclose(back[23:43], long_ramp[23:43], atol=2e-3)
    with pytest.raises(ValueError, match="fewer than the factor"):
        thick_slices(ramp[:3], 4, 0)


def test_kspace_keeps_frequencies_up_to_pi_over_factor():
    n, factor = 64, 4
    t = np.arange(n)
    low_frequency, high_frequency = np.cos(2 * np.pi * 3 * t / n), np.cos(2 * np.pi * 12 * t / n)  # 3, 12 > 8
    volume = np.broadcast_to((low_frequency + high_frequency)[None, None, :], (2, 3, n)).copy()
    low = kspace_truncation(volume, factor, 2)
    assert low.samples.shape == (2, 3, 16) and low.step == 4 and low.first == 0
    np.testing.assert_allclose(low.samples[0, 0], low_frequency[::4], atol=1e-9)  # the samples of the kept part
    back = degrade(volume, Degradation(factor=factor, axis="x", mode="kspace", noise=0.0)).high_resolution_grid
    np.testing.assert_allclose(back[0, 0], low_frequency, atol=0.02)  # cubic spline, ~5 samples per period
    assert np.abs(back[0, 0] - volume[0, 0]).max() > 0.9  # the high frequency is gone


def test_noise_level_background_and_determinism():
    volume = np.zeros((16, 20, 20), dtype=np.float32)
    brain = np.zeros(volume.shape, dtype=bool)
    brain[2:14, 3:17, 3:17] = True
    volume[brain] = np.random.default_rng(1).uniform(100, 200, size=int(brain.sum()))
    degradation = Degradation(factor=2, axis="y", noise=0.05, seed=3)
    first = degrade(volume, degradation, brain, case_rng(3, "case_000"))
    again = degrade(volume, degradation, brain, case_rng(3, "case_000"))
    other = degrade(volume, degradation, brain, case_rng(3, "case_001"))
    assert first.sigma == pytest.approx(0.05 * np.percentile(volume[brain], 99))
    np.testing.assert_array_equal(first.high_resolution_grid, again.high_resolution_grid)
    assert not np.array_equal(first.high_resolution_grid, other.high_resolution_grid)
    assert np.all(first.high_resolution_grid[~brain] == 0)
    clean = degrade(volume, Degradation(factor=2, axis="y", noise=0.0), brain)
    added = first.low_resolution.samples - clean.low_resolution.samples
    assert added.std() == pytest.approx(first.sigma, rel=0.1)  # the noise is on the low-resolution samples


@pytest.mark.parametrize("kwargs,message", [({"factor": 1}, "integer >= 2"), ({"factor": 2.5}, "integer >= 2"),
                                            ({"axis": "k"}, "axis must be"), ({"mode": "blur"}, "mode must be"),
                                            ({"noise": -0.1}, "non-negative")])
def test_degradation_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Degradation(**kwargs)


# ------------------------------------------------------------------------------------------------ dataset maker


def _paths(tmp_path, monkeypatch):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    return tmp_path / "raw"


def test_make_sr_dataset_end_to_end(tmp_path, monkeypatch, capsys):
    from synthunet.dataset.make_sr_dataset import main

    raw = _paths(tmp_path, monkeypatch)
    source = make_tiny_raw_dataset(raw / "Dataset993_Tiny", n_cases=3, shape=(24, 28, 26), seed=1)
    assert main(["-d", "993", "--sequence", "t2f", "-o", "992", "--seed", "7", "-np", "1", "--no_progress"]) == 0
    [folder] = raw.glob("Dataset992_*")
    assert folder.name == "Dataset992_Tiny_SR_T2F_x4z" and not list(raw.glob(".tmp*"))
    assert validate_dataset(folder, progress=False) == []
    content = json.loads((folder / "dataset.json").read_text())
    assert content["channel_names"] == {"0": "T2F_LR", "1": "T2F"} and content["numTraining"] == 3
    assert content["labels"] == {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
    assert content["super_resolution"]["factor"] == 4 and content["super_resolution"]["array_axis"] == 0
    for case in ("case_000", "case_001", "case_002"):
        target = folder / "imagesTr" / f"{case}_0001.nii.gz"
        assert target.read_bytes() == (source / "imagesTr" / f"{case}_0003.nii.gz").read_bytes()
        for sub in ("labelsTr", "masksTr"):
            assert (folder / sub / f"{case}.nii.gz").read_bytes() == (source / sub / f"{case}.nii.gz").read_bytes()
        original, geometry = read_image(target)
        degraded, degraded_geometry = read_image(folder / "imagesTr" / f"{case}_0000.nii.gz")
        brain = read_image(folder / "masksTr" / f"{case}.nii.gz")[0] > 0
        assert degraded_geometry == geometry and np.all(degraded[~brain] == 0) and np.any(degraded != original)
        # exactly the tested degradation (default: thick, x4, z, noise 1 % of the p99), with the case's noise
        expected = degrade(original, Degradation(seed=7), brain, case_rng(7, case)).high_resolution_grid
        np.testing.assert_array_equal(degraded, expected)
        assert content["super_resolution"]["noise_sigma_per_case"][case] == pytest.approx(
            0.01 * np.percentile(original[brain], 99), rel=1e-5)
    assert "world direction (LPS) in the first case is (0.0, 0.0, 1.0)" in capsys.readouterr().out

    # clear errors, nothing written
    for argv, message in ((["-o", "992"], "already exists; pass --overwrite"),
                          (["-o", "991", "--sequence", "PD"], "'PD' is not a channel of Dataset993_Tiny"),
                          (["-o", "991", "--factor", "1"], "integer >= 2"),
                          (["-o", "991", "--factor", "30"], "axis z has 24 voxels"),
                          (["-o", "993"], "id other than the source's"),
                          (["-o", "991", "-d", "994"], "No folder Dataset994_*")):
        base = ["-d", "993", "--sequence", "T2F", "-np", "1", "--no_progress"]
        assert main(base + argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset992_Tiny_SR_T2F_x4z", "Dataset993_Tiny"]


def test_make_sr_dataset_without_masks_and_with_workers(tmp_path, monkeypatch, capsys):
    """The source's brain (non-zero union over its channels) is written as masksTr; -np does not change the noise."""
    from synthunet.dataset.make_sr_dataset import main
    from synthunet.dataset.brain_mask import nonzero_brain_mask

    raw = _paths(tmp_path, monkeypatch)
    source = make_tiny_raw_dataset(raw / "Dataset993_Tiny", n_cases=2, shape=(20, 24, 22), seed=2,
                                   with_masks=False, with_labels=False)
    common = ["-d", "993", "--sequence", "T1N", "--axis", "y", "--factor", "3", "--mode", "kspace", "--seed", "5",
              "--no_progress"]
    assert main(common + ["-o", "992", "-np", "1"]) == 0
    assert main(common + ["-o", "991", "-np", "2"]) == 0
    [one], [two] = raw.glob("Dataset992_*"), raw.glob("Dataset991_*")
    assert validate_dataset(two, progress=False) == [] and not (two / "labelsTr").exists()
    for case in ("case_000", "case_001"):
        channels = [read_image(source / "imagesTr" / f"{case}_{c:04d}.nii.gz")[0] for c in range(4)]
        mask = read_image(two / "masksTr" / f"{case}.nii.gz")[0]
        np.testing.assert_array_equal(mask > 0, nonzero_brain_mask(channels))
        np.testing.assert_array_equal(read_image(one / "imagesTr" / f"{case}_0000.nii.gz")[0],
                                      read_image(two / "imagesTr" / f"{case}_0000.nii.gz")[0])
    # --overwrite replaces the dataset only when the new one is complete, and warns about old preprocessed data
    (tmp_path / "preprocessed" / one.name).mkdir(parents=True)
    capsys.readouterr()
    assert main(common + ["-o", "992", "-np", "1", "--seed", "6", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert f"replaced {one}" in captured.out and "synth_plan_and_preprocess -d 992 --overwrite" in captured.err
    assert not np.array_equal(read_image(one / "imagesTr" / "case_000_0000.nii.gz")[0],
                              read_image(two / "imagesTr" / "case_000_0000.nii.gz")[0])


# ------------------------------------------------------------------------------------------------ rrdb


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("patch,in_channels", [([7, 9, 6], 1), ([12, 10], 3)])
def test_rrdb_builds_from_plan_trains_and_matches_layer_model(patch, in_channels):
    dimension = len(patch)
    topology = architecture_topology("rrdb", [1.0] * dimension, patch)
    architecture = build_architecture("rrdb", topology, 4, dimension)
    assert architecture["kwargs"]["features"] == 4 and architecture["kwargs"]["growth"] == 2
    network = build_network(architecture, in_channels, 1, dimension=dimension)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.InstanceNorm3d))
                   for m in network.modules())
    x, y = torch.rand(2, in_channels, *topology.patch_size), torch.rand(2, 1, *topology.patch_size)
    assert y.shape == (2, 1, *patch)
    assert_trains_and_matches_layer_model(network, architecture, x, y, patch, in_channels)


def test_rrdb_structure_and_esrgan_size():
    from synthunet.architectures.rrdb import RRDB, RRDBNet, ResidualDenseBlock

    network = RRDBNet(2, 3, 3)  # ESRGAN's widths: 64 features, growth 32, 23 RRDBs
    assert len(network.body) == 23 and all(isinstance(b, RRDB) for b in network.body)
    dense = network.body[0].blocks[0]
    assert isinstance(dense, ResidualDenseBlock) and [c.in_channels for c in dense.convs] == [64, 96, 128, 160, 192]
    assert dense.residual_scale == network.body[0].residual_scale == 0.2 and dense.activation.negative_slope == 0.2
    # ESRGAN (seed 004 Table 1: 16.7M) has two more 64 -> 64 convs, for its x4 upsampling
    upsampling = 2 * (64 * 64 * 9 + 64)
    assert round((sum(p.numel() for p in network.parameters()) + upsampling) / 1e6, 1) == 16.7
    # the long skip from the first conv: with the trunk's last conv at zero, the features are the first conv's
    small = RRDBNet(3, 1, 1, features=4, growth=2, n_blocks=1)
    torch.nn.init.zeros_(small.body_conv.weight)
    torch.nn.init.zeros_(small.body_conv.bias)
    x = torch.rand(1, 1, 5, 6, 7)
    expected = small.output(torch.nn.functional.leaky_relu(small.hr_conv(small.first(x)), 0.2))
    torch.testing.assert_close(small(x), expected)


def test_planner_sizes_rrdb_everywhere_with_the_matched_input_prior_on_cpu():
    fingerprint = {"dataset_name": "Dataset999_SR", "channel_names": {"0": "T2F_LR", "1": "T2F"},
                   "label_values": [], "spacings": [[2.0, 2.0, 2.0]] * 10,
                   "shapes_after_cropping": [[60 + i % 3, 70, 62] for i in range(10)]}
    for device in ("cpu", "cuda"):
        plans = plans_for_fingerprint(fingerprint, device=device, configurations=["3d_fullres", "2.5d"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), architecture="rrdb", gan="realesrgan",
                                      plans_name="synthUNetPlans_rrdb")
        assert plans["planned_for"]["gan"] == "realesrgan"
        for name, block in plans["configurations"].items():
            architecture = block["architecture"]
            assert architecture["name"] == "rrdb" and block["data_identifier"] == "synthUNetPlans_3d_fullres"
            # ESRGAN's 23 in 2D; in 3D 4 on GPU, 1 on CPU (steps before depth, the next test)
            assert architecture["kwargs"]["n_blocks"] == (23 if block["dimension"] == 2 else
                                                          4 if device == "cuda" else 1)
            # a super-resolution dataset (T2F and T2F_LR): the prior is the interpolated input, linearly mapped
            assert architecture.get("prior") == ("matched_input" if device == "cpu" else None)
            assert block["estimates"]["fits_budget"] and block["estimates"]["memory_breakdown_gb"]["discriminator"] > 0
            network = build_network(architecture, block["estimates"]["assumed_in_channels"], 1,
                                    dimension=block["dimension"])
            assert block["estimates"]["parameters"] == sum(p.numel() for p in network.parameters())
            # ESRGAN's residual scaling, except in the CPU's single 3D RRDB (the next test)
            cpu_3d = device == "cpu" and block["dimension"] == 3
            assert network.body[0].residual_scale == network.body[0].blocks[0].residual_scale == \
                (1.0 if cpu_3d else 0.2)


def test_cpu_3d_rrdb_plans_are_cut_for_the_minimum_steps():
    fingerprint = {"dataset_name": "Dataset999_SR", "channel_names": {"0": "T2F_LR", "1": "T2F"},
                   "label_values": [], "spacings": [[2.0, 2.0, 2.0]] * 10,
                   "shapes_after_cropping": [[60 + i % 3, 70, 62] for i in range(10)]}
    patches = {}
    for minutes in (10.0, 30.0):
        plans = plans_for_fingerprint(fingerprint, device="cpu", configurations=["3d_fullres"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), architecture="rrdb",
                                      cpu_training_minutes=minutes, plans_name="synthUNetPlans_rrdbL1")
        block = plans["configurations"]["3d_fullres"]
        training, step_s = block["training"], block["estimates"]["step_time_s"]
        assert block["architecture"]["kwargs"] == {"features": 8, "growth": 4, "n_blocks": 1, "residual_scale": 1.0}
        # as the CPU U-Net: at least MIN_CPU_STEPS steps and its tumour share; a lower learning rate (3e-3 and 2e-3
        # blew the unnormalised RRDB up, 1e-3 learned slower than 5e-4)
        assert training["num_epochs"] * training["iterations_per_epoch"] >= MIN_CPU_STEPS * 0.95
        assert 0.85 * step_time_for_min_steps(minutes) < step_s <= step_time_for_min_steps(minutes)
        assert (training["initial_lr"], training["oversample_tumour"]) == (5e-4, 0.66)
        patches[minutes] = block["patch_size"]
    # more minutes, more context; the median image's proportions kept to within a voxel or two
    assert prod(patches[30.0]) > 2 * prod(patches[10.0])
    for patch in patches.values():
        ratios = [p / m for p, m in zip(patch, (61, 70, 62))]
        assert max(ratios) - min(ratios) < 2.5 / min(patch)


# ------------------------------------------------------------------------------------ the U-Net discriminator


@pytest.mark.parametrize("dimension,size", [(2, (32, 40)), (3, (19, 23, 19)), (3, (5, 6, 7))])
def test_unet_discriminator_scores_every_voxel_through_its_skips(dimension, size):
    """Real-ESRGAN's U-Net discriminator: a score per voxel, spectral norm on every conv but the first and the
    score, each up level's skip added after its conv. With the up convs' outputs replaced by zeros, only the
    skips carry the image: the scores are then the stem's features through the two tail convs and the score."""
    from synthunet.training.losses import UNetDiscriminator

    torch.manual_seed(0)
    critic = UNetDiscriminator(1, dimension, size, base_features=4).eval()
    image = torch.rand(2, 1, *size)
    assert critic(image).shape == (2, 1, *size)
    n_down = len(critic.down)
    assert n_down == (3 if min(size) >= 16 else 1)
    normalised = [name for name, module in critic.named_modules() if hasattr(module, "parametrizations")]
    assert len(normalised) == 2 * n_down + 2 and not any(n.startswith(("stem", "score")) for n in normalised)
    hooks = [layer.register_forward_hook(lambda module, args, out: torch.zeros_like(out)) for layer in critic.up]
    with torch.no_grad():
        act = torch.nn.functional.leaky_relu
        expected = critic.score(act(critic.tail[1](act(critic.tail[0](act(critic.stem(image), 0.2)), 0.2)), 0.2))
        torch.testing.assert_close(critic(image), expected)
    for hook in hooks:
        hook.remove()
    # conditional use: several tensors are scored as their concatenation
    two = UNetDiscriminator(2, dimension, size, base_features=4).eval()  # eval: no power iteration per call
    torch.testing.assert_close(two(image, image), two(torch.cat([image, image], dim=1)))


@pytest.mark.parametrize("dimension,size,width", [(2, (32, 40), 16), (3, (19, 23, 19), 8), (3, (5, 6, 7), 4)])
def test_the_layer_model_counts_the_unet_discriminator_exactly(dimension, size, width):
    from torch.utils.flop_counter import FlopCounterMode

    from synthunet.planning.layers import unet_discriminator_layers, unet_discriminator_spec
    from synthunet.planning.memory import count_parameters
    from synthunet.planning.timing import forward_flops
    from synthunet.training.losses import UNetDiscriminator

    critic = UNetDiscriminator(1, dimension, size, base_features=width)
    layers = unet_discriminator_layers(unet_discriminator_spec(1, size, width), size)
    assert count_parameters(layers) == sum(p.numel() for p in critic.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        critic(torch.rand(1, 1, *size))
    assert forward_flops(layers) == counter.get_total_flops()


def test_realesrgan_plans_charge_the_unet_discriminator_in_the_adversarial_steps_only():
    from synthunet.errors import InputError
    from synthunet.planning.budget import Budget
    from synthunet.planning.layers import REALESRGAN_ADVERSARIAL_STEPS, discriminator_layers
    from synthunet.planning.timing import DISCRIMINATOR_PASSES, TRAINING_FLOPS_FACTOR, forward_flops, \
        training_step_flops
    from synthunet.training.trainers import SynthTrainer_SRGANNoVGG

    # the planner's share is the trainer's stage 2
    assert REALESRGAN_ADVERSARIAL_STEPS == pytest.approx(1 - SynthTrainer_SRGANNoVGG.adversarial_start_fraction)
    patch, batch, channels = (19, 23, 19), 2, 1
    architecture = {"name": "rrdb", "kwargs": {"features": 8, "growth": 4, "n_blocks": 1, "residual_scale": 1.0}}
    budget = Budget(device="cpu", memory_gb=8.0, step_time_s=1.0, speeds={3: CpuSpeed(60.0, 30.0)},
                    gan="realesrgan")
    spec = budget.discriminator(channels, patch, architecture)
    assert (spec["name"], spec["in_channels"], spec["base_features"], spec["conditional"]) == (
        "unet_discriminator", 1, 8, False)
    generator = training_step_flops(architecture, patch, batch, channels)
    critic = forward_flops(discriminator_layers(spec, patch))
    assert training_step_flops(architecture, patch, batch, channels, discriminator=spec) == pytest.approx(
        generator + TRAINING_FLOPS_FACTOR * batch * DISCRIMINATOR_PASSES * 0.3 * critic, rel=1e-9)
    assert Budget(device="cuda", memory_gb=8.0, gan=True).gan == "patchgan"
    assert Budget(device="cuda", memory_gb=8.0, gan=False).gan is None
    with pytest.raises(InputError, match="gan must be one of patchgan, realesrgan"):
        Budget(device="cuda", memory_gb=8.0, gan="unet")


def test_the_gan_flag_alone_still_means_the_patchgan():
    from synthunet.planning.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-d", "1", "--gan"]).gan == "patchgan"
    assert parser.parse_args(["-d", "1", "--gan", "realesrgan"]).gan == "realesrgan"
    assert parser.parse_args(["-d", "1"]).gan is None


# ------------------------------------------------------------------------------------------------ trainers


def _rrdb_plans() -> dict:
    plans = tiny_plans()
    for block in plans["configurations"].values():
        block["architecture"] = {"name": "rrdb", "kwargs": {"features": 4, "growth": 2, "n_blocks": 1}}
    return plans


def _trained_srgan(tmp_path, monkeypatch, num_epochs: int):
    """``SynthTrainer_SRGANNoVGG`` on tiny rrdb plans, T2F from T2W, trained for ``num_epochs``."""
    from synthunet.training import Experiment, get_trainer_class

    prepare(tmp_path, monkeypatch, plans=_rrdb_plans())
    seed_everything(0)
    experiment = Experiment.resolve(990, "3d_fullres", "T2F", 0, trainer_name="SynthTrainer_SRGANNoVGG",
                                    inputs=["T2W"])
    trainer = get_trainer_class("SynthTrainer_SRGANNoVGG")(experiment, device="cpu", num_epochs=num_epochs,
                                                           final_validation=False)
    trainer.run_training()
    return experiment, trainer


@pytest.mark.usefixtures("single_thread")
def test_srgan_novgg_trains_rrdb_through_the_trainer(tmp_path, monkeypatch):
    from synthunet.training import load_trained_model

    experiment, trainer = _trained_srgan(tmp_path, monkeypatch, num_epochs=1)
    assert (experiment.output_folder / "checkpoint_final.pth").is_file()
    network, info, _ = load_trained_model(experiment.model_folder, 0, "cpu")
    assert info["trainer"] == "SynthTrainer_SRGANNoVGG" and type(network).__name__ == "RRDBNet"
    assert trainer.discriminator_optimizer.defaults["betas"] == (0.9, 0.99)
    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    trainer.network.train()
    steps = [trainer.train_step(batch) for _ in range(8)]
    first = steps[0]
    assert set(first) == {"loss", "supervised", "adversarial", "discriminator", "l1"}
    # L = 1 * L1 + 0.1 * BCE adversarial (seed 004, Real-ESRGAN's weights)
    assert float(first["loss"]) == pytest.approx(float(first["l1"]) + 0.1 * float(first["adversarial"]), rel=1e-5)
    # the adversarial term makes the supervised loss oscillate on one batch; it must go below the start
    assert min(float(s["supervised"]) for s in steps[4:]) < float(first["supervised"])


@pytest.mark.usefixtures("single_thread")
def test_srgan_trains_on_l1_alone_before_the_discriminator_joins(tmp_path, monkeypatch):
    """Real-ESRGAN's two stages in one run: 70 % of the epochs L1 only (the discriminator untouched), then L1 + 0.1
    adversarial. Checked from the training log of a real 3-epoch run and by single steps in either stage."""
    from synthunet.training.losses import UNetDiscriminator

    experiment, trainer = _trained_srgan(tmp_path, monkeypatch, num_epochs=3)
    assert trainer.adversarial_start_epoch == 2  # int(0.7 * 3)
    log = trainer.log.metrics
    assert log["stage"] == [1.0, 1.0, 2.0]
    assert np.isnan(log["train_adversarial"][:2]).all() and np.isfinite(log["train_adversarial"][2])
    assert np.isnan(log["train_discriminator"][:2]).all() and np.isfinite(log["train_discriminator"][2])
    assert "stage 2 from epoch 2" in (experiment.output_folder / "training_log.txt").read_text()

    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    trainer.network.train()
    critic = [p.detach().clone() for p in trainer.discriminator.parameters()]
    generator = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.current_epoch = 1  # an epoch of stage 1: the generator's plain L1 step
    parts = trainer.train_step(batch)
    assert set(parts) == {"loss", "l1"} and float(parts["loss"]) == pytest.approx(float(parts["l1"]))
    assert all(torch.equal(a, b) for a, b in zip(critic, trainer.discriminator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(generator, trainer.network.parameters()))
    trainer.current_epoch = 2  # stage 2: the discriminator steps too
    # Real-ESRGAN's U-Net discriminator, as wide as the generator, sees the target or the prediction alone
    assert isinstance(trainer.discriminator, UNetDiscriminator) and trainer.discriminator.stem.out_channels == 4
    seen = []
    hook = trainer.discriminator.register_forward_pre_hook(lambda module, args: seen.append(len(args)
                                                                                           * args[0].shape[1]))
    assert {"adversarial", "discriminator"} <= set(trainer.train_step(batch))
    hook.remove()
    assert seen == [1, 1]  # the discriminator's step (real and synthesised in one batch), the generator's
    assert not all(torch.equal(a, b) for a, b in zip(critic, trainer.discriminator.parameters()))


@pytest.mark.usefixtures("single_thread")
def test_srgan_saves_the_average_of_its_weights_as_checkpoint_final(tmp_path, monkeypatch):
    """Real-ESRGAN's ``ema_decay: 0.999``: checkpoint_latest keeps the last step's weights and their EMA (to resume;
    the exact resume is in test_training_resume.py), checkpoint_final holds the EMA. A checkpoint without the EMA
    cannot resume such a run."""
    from synthunet.prediction.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
    from synthunet.training import get_trainer_class

    experiment, trainer = _trained_srgan(tmp_path, monkeypatch, num_epochs=1)
    assert trainer.ema_decay == 0.999
    folder = experiment.output_folder
    latest = load_checkpoint(folder / "checkpoint_latest.pth")
    final = load_checkpoint(folder / "checkpoint_final.pth")
    live, average = latest["network_weights"], latest["ema_weights"]
    assert any(not torch.equal(live[name], average[name]) for name in live)
    assert all(torch.equal(final["network_weights"][name], average[name]) for name in average)
    assert "checkpoint_final holds the EMA of the weights (decay 0.999)" in (folder / "training_log.txt").read_text()

    del latest["ema_weights"]
    save_checkpoint(latest, tmp_path / "no_ema.pth")
    fresh = get_trainer_class("SynthTrainer_SRGANNoVGG")(experiment, device="cpu", final_validation=False)
    fresh.initialize()
    with pytest.raises(CheckpointError, match="no EMA weights"):
        fresh.load(tmp_path / "no_ema.pth")
    # a checkpoint whose discriminator is another (the PatchGAN these recipes had before 2026-12-06): a clear error
    from synthunet.training.losses import PatchDiscriminator
    latest["ema_weights"] = average
    latest["discriminator_weights"] = PatchDiscriminator(1, 3, (16, 16, 16), base_features=8).state_dict()
    save_checkpoint(latest, tmp_path / "patchgan.pth")
    with pytest.raises(CheckpointError, match="discriminator weights do not fit SynthTrainer_SRGANNoVGG's "
                                              "UNetDiscriminator"):
        fresh.load(tmp_path / "patchgan.pth")


@pytest.mark.usefixtures("single_thread")
def test_srgan_adds_the_perceptual_term_and_needs_weights(tmp_path, monkeypatch):
    from synthunet.training import Experiment, get_trainer_class
    from synthunet.training.losses.perceptual import VGG19Features

    prepare(tmp_path, monkeypatch)
    monkeypatch.delenv("SYNTHUNET_VGG19_WEIGHTS", raising=False)
    experiment = Experiment.resolve(990, "2.5d", "T2F", 0, trainer_name="SynthTrainer_SRGAN")
    with pytest.raises(FileNotFoundError, match="--vgg_weights"):
        get_trainer_class("SynthTrainer_SRGAN")(experiment)
    torch.manual_seed(1)
    weights = tmp_path / "vgg19_random.pth"
    torch.save(VGG19Features().state_dict(), weights)
    trainer = get_trainer_class("SynthTrainer_SRGAN")(experiment, num_epochs=1, final_validation=False,
                                                      vgg_weights=str(weights))
    trainer.run_training()
    parts = trainer.train_step(trainer.augment(trainer.to_device(next(trainer.training_batches()))))
    assert {"l1", "vgg"} <= set(parts) and float(parts["vgg"]) > 0
    assert float(parts["supervised"]) == pytest.approx(float(parts["l1"]) + float(parts["vgg"]), rel=1e-5)


# ------------------------------------------------------------------------------------------------ benchmark


@pytest.mark.usefixtures("single_thread")
def test_super_resolution_benchmark_smoke(tmp_path, monkeypatch, capsys):
    raw = _paths(tmp_path, monkeypatch)
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    make_tiny_raw_dataset(raw / "Dataset993_Tiny", n_cases=5, shape=(20, 24, 22), seed=3)
    benchmark = load("super_resolution")
    output = tmp_path / "sr.md"
    argv = ["-d", "993", "--sr_id", "992", "--minutes", "0.05", "-o", str(output), "-np", "1",
            "--work_dir", str(tmp_path / "work"),
            "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.05 --no_progress"]
    assert benchmark.main(argv) == 0
    rows = table_rows(output.read_text())
    assert [(r["method"], r["configuration"], r["target"]) for r in rows] == [
        ("SynthTrainer", "3d_fullres (unet)", "T2F"), ("SynthTrainer_SRGANNoVGG", "3d_fullres (rrdb)", "T2F"),
        ("cubic B-spline (the input)", "—", "T2F")]
    splits = json.loads((tmp_path / "preprocessed" / "Dataset992_Tiny_SR_T2F_x4z" / "splits_final.json").read_text())
    for row in rows:
        assert int(row["n cases"]) == len(splits[0]["val"])
        for region in ("brain", "tumour", "healthy"):
            for metric in ("PSNR", "SSIM"):
                assert MEAN_STD.match(row[f"{region} {metric}"]), (row, region, metric)
    for row in rows[:2]:
        assert re.fullmatch(NUMBER, row["train min/fold"]) and re.fullmatch(NUMBER, row["infer s/case"])
    assert rows[2]["train min/fold"] == rows[2]["infer s/case"] == "n/a"
    plans = json.loads((tmp_path / "preprocessed" / "Dataset992_Tiny_SR_T2F_x4z" /
                        "synthUNetPlans_rrdb.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["name"] == "rrdb"
    assert plans["planned_for"]["gan"] == "realesrgan"
    text = output.read_text()
    assert "factor 4 along voxel axis z" in text and "machine:" in text
    # --rows: the RRDB on L1 alone, planned without the discriminator, alone on a new dataset (no default plans
    # there: the cubic row takes the fold's cases from the plans that were made)
    only = tmp_path / "sr_rrdb_l1.md"
    argv_only = [*argv, "--rows", "rrdb_l1"]
    argv_only[argv_only.index("992")], argv_only[argv_only.index(str(output))] = "991", str(only)
    assert benchmark.main(argv_only) == 0
    assert [(r["method"], r["configuration"]) for r in table_rows(only.read_text())] == [
        ("SynthTrainer", "3d_fullres (rrdb_l1)"), ("cubic B-spline (the input)", "—")]
    assert not (tmp_path / "preprocessed" / "Dataset991_Tiny_SR_T2F_x4z" / "synthUNetPlans.json").exists()
    plans = json.loads((tmp_path / "preprocessed" / "Dataset991_Tiny_SR_T2F_x4z" /
                        "synthUNetPlans_rrdbL1.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["name"] == "rrdb" and not plans["planned_for"]["gan"]
    # an existing dataset made with another degradation is not silently reused
    capsys.readouterr()
    assert benchmark.main([*argv, "--factor", "2"]) == 2
    assert "was not made with this degradation" in capsys.readouterr().err



def test_each_rows_predictions_are_linked_under_bare_case_names(tmp_path):
    benchmark = load("super_resolution")
    source = tmp_path / "predictions"
    source.mkdir()
    for name in ("Ph_1_0001.nii.gz", "Ph_10_0001.nii.gz", "Ph_2.nii.gz", "notes.txt"):
        (source / name).write_bytes(name.encode())
    linked = benchmark.link_bare_names(source, ["Ph_1", "Ph_2", "Ph_10"], ".nii.gz", tmp_path / "out")
    assert sorted(p.name for p in linked.iterdir()) == ["Ph_1.nii.gz", "Ph_10.nii.gz", "Ph_2.nii.gz"]
    assert [(linked / f"{c}.nii.gz").read_bytes() for c in ("Ph_1", "Ph_2", "Ph_10")] == [
        b"Ph_1_0001.nii.gz", b"Ph_2.nii.gz", b"Ph_10_0001.nii.gz"]
    (source / "Ph_2_0001.nii.gz").write_bytes(b"another")
    with pytest.raises(benchmark.BenchmarkError, match="2 prediction files for case Ph_2"):
        benchmark.link_bare_names(source, ["Ph_2"], ".nii.gz", tmp_path / "out")
    with pytest.raises(benchmark.BenchmarkError, match="0 prediction files for case Ph_3"):
        benchmark.link_bare_names(source, ["Ph_3"], ".nii.gz", tmp_path / "out")


@pytest.mark.slow  # a U-Net, a segmenter and four synth_segment processes: about 2 minutes
@pytest.mark.usefixtures("single_thread")
def test_super_resolution_benchmark_reports_the_downstream_dice_of_each_row(tmp_path, monkeypatch):
    raw = _paths(tmp_path, monkeypatch)
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    make_tiny_raw_dataset(raw / "Dataset993_Tiny", n_cases=5, shape=(20, 24, 22), seed=3)
    benchmark = load("super_resolution")
    output, work = tmp_path / "sr.md", tmp_path / "work"
    argv = ["-d", "993", "--sr_id", "992", "--rows", "unet", "--minutes", "0.05", "--segmenter_minutes", "0.02",
            "-o", str(output), "-np", "1", "--work_dir", str(work),
            "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.05 --no_progress"]
    assert benchmark.main(argv) == 0
    quality_table, segmentation_table = output.read_text().split("## Downstream tumour segmentation")
    assert [r["method"] for r in table_rows(quality_table)] == ["SynthTrainer", "cubic B-spline (the input)"]
    rows = table_rows(segmentation_table)
    assert [r["input set"] for r in rows] == ["real", "synthetic-T2F (unet)", "synthetic-T2F (cubic)",
                                              "zero-filled-T2F"]
    val = sorted(json.loads((tmp_path / "preprocessed" / "Dataset992_Tiny_SR_T2F_x4z" /
                             "splits_final.json").read_text())[0]["val"])
    assert all(int(r["n cases"]) == len(val) for r in rows)
    content = json.loads(output.with_suffix(".json").read_text())["segmentation"]
    assert content["header"]["cases"] == val and content["header"]["dataset"] == "Dataset993_Tiny"
    assert all(0 <= row["dice"][r]["mean"] <= 1 for row in content["rows"] for r in ("WT", "TC", "ET"))
    # what the segmenter read as T2F: the row's own files (the cubic one is the degraded input channel)
    for case in val:
        cubic = work / "segmentation" / "inputs" / "cubic" / f"{case}.nii.gz"
        lr = raw / "Dataset992_Tiny_SR_T2F_x4z" / "imagesTr" / f"{case}_0000.nii.gz"
        assert cubic.read_bytes() == lr.read_bytes()
        [unet] = (work / "unet" / "predictions").glob(f"*/T2F/fold_0/{case}_*.nii.gz")
        assert (work / "segmentation" / "inputs" / "unet" / f"{case}.nii.gz").read_bytes() == unet.read_bytes()


def test_a_super_resolution_model_exports_with_the_low_resolution_inputs_landmarks(tmp_path):
    import json

    from synthunet.prediction.model_folder import ModelFolder
    from synthunet.inference.predictor import default_preprocessing
    from synthunet.inference.testing import fake_plans, write_model_folder

    plans = fake_plans()
    plans["channel_names"] = {"0": "T2F_LR", "1": "T2F"}
    folder = write_model_folder(tmp_path, "T2F", plans=plans, write_checkpoints=False)
    assert ModelFolder.load(folder).export_landmarks_from is None  # a plain synthesis dataset.json
    content = json.loads((folder / "dataset.json").read_text())
    content["super_resolution"] = {"source": "Dataset501_BraTSPhantom", "sequence": "T2F"}
    (folder / "dataset.json").write_text(json.dumps(content))
    model = ModelFolder.load(folder)
    assert model.export_landmarks_from == "T2F_LR"
    assert default_preprocessing(model).landmarks_from == "T2F_LR"
    content["super_resolution"]["sequence"] = "T1C"  # another sequence's task: reference landmarks as before
    (folder / "dataset.json").write_text(json.dumps(content))
    assert ModelFolder.load(folder).export_landmarks_from is None
