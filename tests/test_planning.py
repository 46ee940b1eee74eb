"""Experiment planning on hand-written fingerprints (no probe: a fixed CPU speed is injected)."""
import json
from math import prod

import numpy as np
import pytest

from synthunet.planning import plan_experiment, plans_for_fingerprint
from synthunet.planning.cli import main as cli_main
from synthunet.planning.configuration import MAX_DATASET_FRACTION
from synthunet.planning.layers import Layer
from synthunet.planning.planner import RESAMPLING
from synthunet.planning.timing import CpuSpeed
from synthunet.planning.topology import fullres_target_spacing, plan_topology
from synthunet.planning.training_plan import CPU_OVERHEAD_FACTOR, MIN_CPU_STEPS, cpu_schedule, step_time_for_min_steps

SPEED = CpuSpeed(gflops=60.0, gflops_narrow=30.0)
CHANNELS = {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"}


def fingerprint(spacing, shape, n=20, spacing_jitter=None, seed=0, channels=CHANNELS):
    """Per-case spacings/shapes around ``spacing``/``shape`` (z, y, x)."""
    rng = np.random.default_rng(seed)
    spacings = [list(spacing) for _ in range(n)]
    if spacing_jitter is not None:
        axis, low, high = spacing_jitter
        for s in spacings:
            s[axis] = float(rng.uniform(low, high))
    shapes = [[int(v * rng.uniform(0.95, 1.05)) for v in shape] for _ in range(n)]
    return {"dataset_name": "Dataset999_Test", "channel_names": channels, "label_values": [0, 1, 2, 3],
            "spacings": spacings, "shapes_after_cropping": shapes, "num_cases": n}


def plan(fp, device="cpu", **options):
    return plans_for_fingerprint(fp, device=device, cpu_speed=SPEED if device == "cpu" else None, **options)


def check_configuration(block, num_cases, median_shape):
    kwargs = block["architecture"]["kwargs"]
    patch = block["patch_size"]
    strides = np.array(kwargs["strides"])
    divisor = np.prod(strides, axis=0)
    assert all(p % d == 0 for p, d in zip(patch, divisor)), (patch, divisor)
    assert len(kwargs["kernel_sizes"]) == len(kwargs["strides"]) == kwargs["n_stages"]
    assert block["batch_size"] >= 2
    if block["batch_size"] > 2:
        assert block["batch_size"] * prod(patch) <= MAX_DATASET_FRACTION * num_cases * prod(median_shape) + 1
    assert block["estimates"]["fits_budget"]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_isotropic_dataset(device):
    fp = fingerprint([2.0, 2.0, 2.0], [80, 96, 80])
    plans = plan(fp, device)
    assert set(plans["configurations"]) == {"3d_fullres", "2.5d"}
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"] == [2.0, 2.0, 2.0]
    assert all(k == [3, 3, 3] for k in full["architecture"]["kwargs"]["kernel_sizes"])
    check_configuration(full, 20, full["median_shape"])
    features = full["architecture"]["kwargs"]["features_per_stage"]
    if device == "cuda":
        assert features[0] == 32 and max(features) <= 320 and full["training"]["num_epochs"] == 1000
        assert full["estimates"]["device_memory_gb"] <= 8
    else:
        assert full["estimates"]["step_time_s"] <= step_time_for_min_steps(10.0) < 1.0
    # 2.5d reads the same data; its square patch covers the largest face when the budget allows
    slab = plans["configurations"]["2.5d"]
    assert slab["data_identifier"] == full["data_identifier"] == "synthUNetPlans_3d_fullres"
    assert slab["spacing"] == full["spacing"] and slab["dimension"] == 2 and slab["num_slices"] == 3
    assert slab["patch_size"][0] == slab["patch_size"][1] >= max(full["median_shape"])
    assert slab["estimates"]["assumed_in_channels"] == 9
    check_configuration(slab, 20, slab["median_shape"])
    assert plans["planned_for"]["device"] == device
    json.dumps(plans)  # serialisable


def test_anisotropic_dataset_kernel_pooling_and_10th_percentile():
    # 1 x 1 x 4-6 mm (z coarse, few slices): the 10th percentile of z, kernel 1 and no pooling on z first
    fp = fingerprint([5.0, 1.0, 1.0], [32, 200, 200], spacing_jitter=(0, 4.0, 6.0))
    spacing = fullres_target_spacing(fp["spacings"], fp["shapes_after_cropping"])
    z = [s[0] for s in fp["spacings"]]
    assert spacing[0] == pytest.approx(np.percentile(z, 10)) and spacing[0] < np.median(z)
    plans = plan(fp, "cuda")
    full = plans["configurations"]["3d_fullres"]
    kwargs = full["architecture"]["kwargs"]
    assert kwargs["kernel_sizes"][0] == [1, 3, 3]
    assert kwargs["strides"][1] == [1, 2, 2]
    assert any(s[0] == 2 for s in kwargs["strides"])  # z is pooled once in-plane has caught up
    check_configuration(full, 20, full["median_shape"])
    # 2.5d gets its own isotropic data
    slab = plans["configurations"]["2.5d"]
    assert slab["spacing"] == [1.0, 1.0, 1.0] and slab["data_identifier"] == "synthUNetPlans_2.5d"


def test_10th_percentile_not_used_when_coarse_axis_has_many_voxels():
    fp = fingerprint([5.0, 1.0, 1.0], [200, 200, 200], spacing_jitter=(0, 4.0, 6.0))
    spacing = fullres_target_spacing(fp["spacings"], fp["shapes_after_cropping"])
    assert spacing[0] == pytest.approx(np.median([s[0] for s in fp["spacings"]]))


def test_topology_rules_by_hand():
    topology = plan_topology([3.0, 1.0, 1.0], [20, 64, 64])
    assert topology.strides[:3] == [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    assert topology.kernel_sizes[0] == [1, 3, 3] and topology.kernel_sizes[1] == [3, 3, 3]
    # every axis is pooled while it stays >= 4 voxels: 64 -> 4 is 4 pools
    assert topology.pools_per_axis[1:] == [4, 4]
    assert topology.patch_size[0] % 2 ** topology.pools_per_axis[0] == 0
    # isotropic data with an axis that stops pooling earlier: kernels stay 3 (sticky), bottleneck 3
    uneven = plan_topology([2.0, 2.0, 2.0], [64, 64, 48])
    assert uneven.strides[-1] == [2, 2, 1]
    assert all(k == [3, 3, 3] for k in uneven.kernel_sizes)


def test_cpu_time_budget_shrinks_the_network():
    fp = fingerprint([1.0, 1.0, 1.0], [140, 170, 140])
    small = plan(fp, step_time_budget_s=0.3, configurations=["3d_fullres"])["configurations"]["3d_fullres"]
    large = plan(fp, step_time_budget_s=30.0, configurations=["3d_fullres"])["configurations"]["3d_fullres"]
    small_features = small["architecture"]["kwargs"]["features_per_stage"][0]
    large_features = large["architecture"]["kwargs"]["features_per_stage"][0]
    assert small_features <= large_features
    assert small_features < large_features or prod(small["patch_size"]) < prod(large["patch_size"])
    assert small["estimates"]["step_time_s"] <= 0.3 and large["estimates"]["step_time_s"] <= 30.0
    assert small["estimates"]["flops_per_step"] < large["estimates"]["flops_per_step"]
    # a tighter budget never gives a larger schedule step
    assert small["training"]["num_epochs"] * small["training"]["iterations_per_epoch"] >= \
        large["training"]["num_epochs"] * large["training"]["iterations_per_epoch"]


def test_cpu_3d_plans_cut_the_patch_for_the_minimum_steps():
    fp = fingerprint([1.0, 1.0, 1.0], [140, 170, 140])
    for minutes in (2.0, 10.0):
        block = plan(fp, cpu_training_minutes=minutes, configurations=["3d_fullres"])["configurations"]["3d_fullres"]
        training, kwargs = block["training"], block["architecture"]["kwargs"]
        assert training["num_epochs"] * training["iterations_per_epoch"] >= MIN_CPU_STEPS * 0.95
        assert block["estimates"]["step_time_s"] <= step_time_for_min_steps(minutes)
        # the width is the CPU rule's; the patch is far smaller than a 1.0 s step would allow
        long = plan(fp, cpu_training_minutes=1e4, configurations=["3d_fullres"])["configurations"]["3d_fullres"]
        assert kwargs["features_per_stage"][0] == long["architecture"]["kwargs"]["features_per_stage"][0]
        assert prod(block["patch_size"]) < prod(long["patch_size"])
        divisor = np.prod(np.array(kwargs["strides"]), axis=0)
        assert all(p % d == 0 and p >= 2 * d for p, d in zip(block["patch_size"], divisor))
    # a long training budget never lifts a step above the ceiling (--step_time_budget_s)
    ceiling = plan(fp, step_time_budget_s=0.3, cpu_training_minutes=1e4, configurations=["3d_fullres"])
    assert ceiling["configurations"]["3d_fullres"]["estimates"]["step_time_s"] <= 0.3
    assert step_time_for_min_steps(5.0) == pytest.approx(step_time_for_min_steps(10.0) / 2)
    with pytest.raises(ValueError):
        step_time_for_min_steps(0.0)


def test_cpu_3d_depth_is_planned_for_the_whole_image_whatever_the_probe():
    # the example dataset's geometry: a 1.0 s step allows 64x64x48 (5 stages) at 92 GFLOP/s but fewer stages at
    # 65; with short steps the depth follows the median image, so both machines train the same network
    fp = fingerprint([2.0, 2.0, 2.0], [70, 84, 68])
    blocks = [plans_for_fingerprint(fp, device="cpu", cpu_speed=CpuSpeed(*speed), configurations=["3d_fullres"])
              ["configurations"]["3d_fullres"] for speed in ((65.0, 25.0), (92.0, 36.0))]
    kwargs = [b["architecture"]["kwargs"] for b in blocks]
    assert kwargs[0] == kwargs[1] and kwargs[0]["n_stages"] == 5
    # four pools per axis: 70-84 voxels pooled while >= 4 (nnU-Net's rule) -> bottleneck 4-5 voxels
    assert np.prod(np.array(kwargs[0]["strides"]), axis=0).tolist() == [16, 16, 16]


def test_cpu_and_gpu_training_blocks():
    fp = fingerprint([1.0, 1.0, 1.0], [140, 170, 140])
    cpu_plans = plan(fp, configurations=["3d_fullres", "2.5d"])["configurations"]
    cpu = cpu_plans["3d_fullres"]["training"]
    gpu = plan(fp, device="cuda", configurations=["3d_fullres"])["configurations"]["3d_fullres"]["training"]
    # GPU plans keep nnU-Net v2's defaults (1000 x 250 steps, lr 1e-2 SGD there; AdamW 1e-3 here, 1/3 foreground)
    assert (gpu["num_epochs"], gpu["iterations_per_epoch"], gpu["initial_lr"]) == (1000, 250, 1e-3)
    assert gpu["oversample_tumour"] == pytest.approx(1 / 3, abs=0.01)
    # the short CPU schedule starts higher and centres more patches on tumour; 2.5d (not cut short) keeps nnU-Net's
    assert cpu["initial_lr"] > gpu["initial_lr"] and cpu["oversample_tumour"] > gpu["oversample_tumour"]
    slab = cpu_plans["2.5d"]["training"]
    assert (slab["initial_lr"], slab["oversample_tumour"]) == (gpu["initial_lr"], gpu["oversample_tumour"])


def test_gpu_memory_budget_and_lowres():
    fp = fingerprint([1.0, 1.0, 1.0], [300, 300, 300])
    plans = plan(fp, "cuda", gpu_memory_gb=4)
    full = plans["configurations"]["3d_fullres"]
    assert full["estimates"]["device_memory_gb"] <= 4
    assert full["estimates"]["patch_coverage"] < 0.25
    low = plans["configurations"]["3d_lowres"]
    assert low["spacing"][0] > 1.0 and low["data_identifier"] == "synthUNetPlans_3d_lowres"
    assert low["estimates"]["patch_coverage"] >= 0.25
    check_configuration(low, 20, low["median_shape"])
    bigger = plan(fp, "cuda", gpu_memory_gb=16)["configurations"]["3d_fullres"]
    assert prod(bigger["patch_size"]) * bigger["batch_size"] > prod(full["patch_size"]) * full["batch_size"]


def test_no_lowres_for_small_images_and_gan_costs_memory():
    fp = fingerprint([2.0, 2.0, 2.0], [80, 96, 80])
    plain = plan(fp, "cuda", configurations=["3d_fullres", "3d_lowres"])
    assert set(plain["configurations"]) == {"3d_fullres"}
    gan = plan(fp, "cuda", configurations=["3d_fullres"], gan=True)
    block_plain, block_gan = plain["configurations"]["3d_fullres"], gan["configurations"]["3d_fullres"]
    assert block_gan["estimates"]["memory_breakdown_gb"]["discriminator"] > 0
    assert block_plain["estimates"]["memory_breakdown_gb"]["discriminator"] == 0


def test_cpu_schedule_fills_training_minutes():
    epochs, iterations, val_iterations = cpu_schedule(0.5, 10)
    total = epochs * (iterations + val_iterations / 3) * 0.5 * CPU_OVERHEAD_FACTOR
    assert 540 <= total <= 600 and iterations == 50
    assert cpu_schedule(100.0, 1)[0] == 1  # less than an epoch fits: one short epoch


def test_single_conv_flops_by_hand():
    layer = Layer("conv", 4, 8, (3, 3, 3), (10, 12, 14), (10, 12, 14))
    assert layer.forward_flops == 2 * 27 * 4 * 8 * 10 * 12 * 14
    transposed = Layer("transposed_conv", 16, 8, (2, 2, 2), (5, 6, 7), (10, 12, 14))
    assert transposed.forward_flops == 2 * 8 * 16 * 8 * 5 * 6 * 7


def test_resampling_block_matches_preprocessing_defaults():
    from synthunet.preprocessing.resampling import DEFAULT_RESAMPLING
    assert RESAMPLING == DEFAULT_RESAMPLING


def test_invalid_inputs():
    with pytest.raises(ValueError, match="at least two channels"):
        plan(fingerprint([1.0] * 3, [64] * 3, channels={"0": "T1N"}))
    with pytest.raises(ValueError, match="odd"):
        plan(fingerprint([1.0] * 3, [64] * 3), num_slices=2)
    with pytest.raises(ValueError, match="Unknown configuration"):
        plan(fingerprint([1.0] * 3, [64] * 3), configurations=["2d"])


@pytest.fixture()
def preprocessed(tmp_path, monkeypatch):
    monkeypatch.setenv("synthUNet_preprocessed", str(tmp_path))
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    folder = tmp_path / "Dataset501_Test"
    folder.mkdir()
    fp = fingerprint([2.0, 2.0, 2.0], [80, 96, 80])
    (folder / "dataset_fingerprint.json").write_text(json.dumps(fp))
    monkeypatch.setattr("synthunet.planning.experiment.probe_cpu_speed", lambda dimension: SPEED)
    return folder


def test_plan_experiment_writes_cpu_and_gpu_plans(preprocessed):
    plans = plan_experiment(501, device="cpu")
    written = json.loads((preprocessed / "synthUNetPlans.json").read_text())
    assert written == plans
    gpu = json.loads((preprocessed / "synthUNetPlans_gpu.json").read_text())
    assert gpu["planned_for"]["device"] == "cuda" and gpu["plans_name"] == "synthUNetPlans_gpu"
    for name in ("3d_fullres", "2.5d"):
        assert gpu["configurations"][name]["data_identifier"] == plans["configurations"][name]["data_identifier"]
        assert gpu["configurations"][name]["spacing"] == plans["configurations"][name]["spacing"]
    assert plans["planned_for"]["probe_gflops"] == 60.0
    assert not list(preprocessed.glob(".tmp*"))
    # kept unless --overwrite
    (preprocessed / "synthUNetPlans.json").write_text(json.dumps({**plans, "marker": 1}))
    assert plan_experiment(501, device="cpu")["marker"] == 1
    assert "marker" not in plan_experiment(501, device="cpu", overwrite=True)


def test_cli(preprocessed, capsys):
    assert cli_main(["-d", "501", "--device", "cpu", "-c", "3d_fullres", "--step_time_budget_s", "0.5",
                     "--no_gpu_plans", "-p", "myPlans"]) == 0
    plans = json.loads((preprocessed / "myPlans.json").read_text())
    assert list(plans["configurations"]) == ["3d_fullres"]
    assert plans["configurations"]["3d_fullres"]["estimates"]["step_time_s"] <= 0.5
    assert not (preprocessed / "myPlans_gpu.json").exists()
    assert "3d_fullres: patch" in capsys.readouterr().out
    assert cli_main(["-d", "501", "--device", "cpu", "--cpu_gflops", "200", "100", "--overwrite", "-c", "3d_fullres",
                     "--no_gpu_plans"]) == 0
    plans = json.loads((preprocessed / "synthUNetPlans.json").read_text())
    assert plans["planned_for"]["probe"]["3d"] == {"gflops_base32": 200.0, "gflops_base8": 100.0}
    assert cli_main(["-d", "777", "--device", "cpu"]) == 2  # unknown dataset: message and exit code 2


def test_probe_mechanics_with_tiny_networks(monkeypatch):
    from synthunet.planning import cpu_probe
    monkeypatch.setattr(cpu_probe, "PROBES", {3: ((8, 16, 1), (4, 16, 1))})
    cpu_probe.probe_cpu_speed.cache_clear()
    try:
        speed = cpu_probe.probe_cpu_speed(3, repeats=1)
        assert speed.gflops > 0 and speed.gflops_narrow > 0
        assert cpu_probe.probe_cpu_speed(3, repeats=1) is speed  # cached per process
    finally:
        cpu_probe.probe_cpu_speed.cache_clear()


def test_cpu_speed_interpolates_between_widths():
    speed = CpuSpeed(gflops=64.0, gflops_narrow=16.0)
    assert speed.rate(32) == pytest.approx(64e9) and speed.rate(8) == pytest.approx(16e9)
    assert speed.rate(16) == pytest.approx(32e9) and speed.rate(4) == pytest.approx(16e9)
    assert speed.step_time(64e9, 32) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(12))
def test_random_fingerprints_give_consistent_plans(seed):
    rng = np.random.default_rng(seed)
    spacing = list(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 5.0], size=3))
    shape = [int(v) for v in rng.integers(12, 260, size=3)]
    fp = fingerprint(spacing, shape, n=int(rng.integers(3, 30)), seed=seed)
    for device in ("cpu", "cuda"):
        plans = plan(fp, device, gpu_memory_gb=float(rng.choice([2, 8, 24])))
        for block in plans["configurations"].values():
            patch, kwargs = block["patch_size"], block["architecture"]["kwargs"]
            assert all(p % d == 0 for p, d in zip(patch, np.prod(np.array(kwargs["strides"]), axis=0)))
            assert block["batch_size"] >= 2 and all(p >= 1 for p in patch)
            assert kwargs["features_per_stage"] == sorted(kwargs["features_per_stage"])


@pytest.mark.parametrize("environment", [{}, {"SYNTHUNET_NUM_WORKERS": "0"}, {"SYNTHUNET_NUM_THREADS": "1"}])
def test_probe_threads_follow_the_trainer(monkeypatch, environment):
    import torch

    from synthunet.utilities.threads import configure_cpu_threads, default_num_workers, training_threads
    for name in ("SYNTHUNET_NUM_WORKERS", "SYNTHUNET_NUM_THREADS", "SYNTH_NUM_WORKERS", "SYNTH_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    previous = torch.get_num_threads()
    try:
        expected = training_threads()
        assert configure_cpu_threads(default_num_workers()) == expected
    finally:
        torch.set_num_threads(previous)


def test_architecture_speed_scales_the_generator_part_of_the_step(monkeypatch):
    """A measured speed factor divides the generator's share of the step time; a discriminator's FLOPs stay at
    the probe's rate (hand computation with the time model's own FLOP counts)."""
    from synthunet.planning import budget as budget_module
    from synthunet.planning.budget import Budget, evaluate
    from synthunet.planning.configuration import build_architecture
    from synthunet.planning.timing import large_step_factor, step_elements, training_step_flops

    speed = CpuSpeed(50.0, 50.0)  # equal rates: the base width does not matter
    patch, batch, channels = [16, 16, 16], 2, 3
    architecture = build_architecture("rrdb", plan_topology([1.0] * 3, patch), 8, 3)
    for gan in (False, True):
        budget = Budget(device="cpu", memory_gb=8.0, step_time_s=100.0, speeds={3: speed}, gan=gan)
        discriminator = budget.discriminator(channels, patch, architecture)
        total = training_step_flops(architecture, patch, batch, channels, discriminator=discriminator)
        generator = training_step_flops(architecture, patch, batch, channels)
        assert (total > generator) == gan
        elements = step_elements(architecture, patch, batch, channels, discriminator=discriminator)
        rate = 50e9 * large_step_factor(elements)
        monkeypatch.setitem(budget_module.ARCHITECTURE_SPEED, "rrdb", 1.0)
        plain = evaluate(architecture, patch, batch, channels, budget).step_time_s
        monkeypatch.setitem(budget_module.ARCHITECTURE_SPEED, "rrdb", 0.25)
        slowed = evaluate(architecture, patch, batch, channels, budget).step_time_s
        assert plain == pytest.approx(total / rate)
        assert slowed == pytest.approx((4 * generator + total - generator) / rate)


def test_slower_architectures_get_fewer_or_smaller_steps():
    """The 2.5D BraSyn U-Net runs its FLOPs slower than the probe's U-Nets (benchmarks/architecture_speed.py):
    its plan is made for the real speed, so its minutes are the budget's."""
    from synthunet.planning import timing

    fp = fingerprint((2.0, 2.0, 2.0), (80, 96, 80))
    kwargs = dict(device="cpu", configurations=["2.5d"], cpu_speed=CpuSpeed(90.0, 30.0),
                  architecture="unet25d_brasyn")
    planned = plans_for_fingerprint(fp, **kwargs)["configurations"]["2.5d"]
    saved = timing.ARCHITECTURE_SPEED.pop("unet25d_brasyn")
    try:
        unscaled = plans_for_fingerprint(fp, **kwargs)["configurations"]["2.5d"]
    finally:
        timing.ARCHITECTURE_SPEED["unet25d_brasyn"] = saved
    # at its real speed the plan made without the factor would not fit the 1 s step ceiling ...
    assert unscaled["estimates"]["step_time_s"] / saved > 1.0
    # ... the plan made with it does, with smaller steps and fewer epochs for the same minutes
    assert planned["estimates"]["step_time_s"] <= 1.0
    assert planned["estimates"]["flops_per_step"] < unscaled["estimates"]["flops_per_step"]
    assert planned["training"]["num_epochs"] < unscaled["training"]["num_epochs"]
