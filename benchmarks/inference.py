"""Inference speed on CPU: seconds per case for a BraTS-sized volume (240 x 240 x 155), 3d_fullres and 2.5d.

    python benchmarks/inference.py                    # measure components, print a markdown table
    python benchmarks/inference.py --write-doc        # also put the table into documentation/predict.md
    python benchmarks/inference.py --shape 64 96 96 --end-to-end   # whole-pipeline timings (small volumes)

A whole 3D case with 5 folds and mirroring is hours of CPU time, so by default the script measures the
parts and adds them up: (1) the network's time per forward batch at the inference batch size, (2) the
pipeline's own time (patch extraction, Gaussian accumulation, rotations for orientation fusion) by
running the real sliding-window / fusion code with a network that costs nothing, and (3) the count of
forward batches. seconds/case = pipeline + batches x mirrorings x folds x time per batch. A check on a
small volume compares this estimate with a real end-to-end run. The FLOP-bound lower limit is
patches x mirrorings x folds x FLOPs per patch / the conv throughput a short probe measures.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthunet.architectures import build_network
from synthunet.prediction.orientation_fusion import predict_volume_25d
from synthunet.prediction.sliding_window import default_batch_size, predict_volume_sliding_window
from synthunet.inference.testing import ConstantNetwork
from synthunet.planning.layers import unet_layers
from synthunet.planning.timing import forward_flops

DOC = Path(__file__).resolve().parents[1] / "documentation" / "predict.md"
START, END = "<!-- inference-benchmark:start -->", "<!-- inference-benchmark:end -->"


def unet(dimension: int, features: list[int], patch: list[int]) -> dict:
    n = len(features)
    return {"name": "unet", "kwargs": {"n_stages": n, "features_per_stage": features,
                                       "kernel_sizes": [[3] * dimension] * n,
                                       "strides": [[1] * dimension] + [[2] * dimension] * (n - 1),
                                       "n_conv_per_stage": 2, "n_conv_per_stage_decoder": 2,
                                       "norm": "instance", "nonlinearity": "leaky_relu"}, "patch_size": patch}


def brats_fingerprint(cases: int = 100, seed: int = 0) -> dict:
    """A BraTS-like fingerprint: 1 mm isotropic, brains cropped to about 140 x 170 x 140 (z, y, x)."""
    rng = np.random.default_rng(seed)
    return {"dataset_name": "Dataset998_BraTSBenchmark", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
            "label_values": [0, 1, 2, 3], "spacings": [[1.0, 1.0, 1.0]] * cases, "num_cases": cases,
            "shapes_after_cropping": [[int(v * rng.uniform(0.9, 1.1)) for v in (140, 170, 140)] for _ in range(cases)]}


def describe(arch: dict) -> str:
    kwargs = arch["kwargs"]
    features = kwargs["features_per_stage"]
    return (f"{kwargs['n_stages']} stages, features {features[0]}-{features[-1]}, patch "
            f"{' x '.join(map(str, arch['patch_size']))}")


def planned_networks(probe_gflops: float) -> tuple[dict, dict, str]:
    """The networks to time: what the planner chooses for this CPU on a BraTS-like fingerprint, else fixed U-Nets."""
    try:
        from synthunet.planning import plans_for_fingerprint
    except ImportError:
        features = [16, 32, 64, 128, 256]
        arch3, arch2 = unet(3, features, [64, 64, 64]), unet(2, features, [128, 128])
        return arch3, arch2, f"fixed (no planner): 3D {describe(arch3)}; 2.5D {describe(arch2)}, k = 3"
    plans = plans_for_fingerprint(brats_fingerprint(), device="cpu", cpu_speed=probe_gflops,
                                  configurations=("3d_fullres", "2.5d"))
    blocks = plans["configurations"]
    arch3 = {**blocks["3d_fullres"]["architecture"], "patch_size": blocks["3d_fullres"]["patch_size"]}
    arch2 = {**blocks["2.5d"]["architecture"], "patch_size": blocks["2.5d"]["patch_size"]}
    return arch3, arch2, (f"planned for this CPU on a BraTS-like fingerprint (1 mm, brains about 140 x 170 x 140): "
                          f"3D {describe(arch3)}; 2.5D {describe(arch2)}, k = {blocks['2.5d']['num_slices']}")


def probe_conv_flops(seconds: float = 1.5) -> float:
    """Achieved FLOP/s of a 3x3x3 convolution (32 -> 32 channels, 48^3), best of a few runs."""
    conv = torch.nn.Conv3d(32, 32, 3, padding=1, bias=False).eval()
    x = torch.rand(1, 32, 48, 48, 48)
    flops = 2 * 27 * 32 * 32 * 48 ** 3
    best = 0.0
    with torch.inference_mode():
        conv(x)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            conv(x)
            best = max(best, flops / (time.perf_counter() - t))
    return best


def time_forward(network: torch.nn.Module, shape: tuple[int, ...], repeats: int) -> float:
    """Median seconds of one forward pass of a batch of ``shape`` (after one warm-up)."""
    x = torch.rand(shape)
    times = []
    with torch.inference_mode():
        network(x)
        for _ in range(repeats):
            t = time.perf_counter()
            network(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def timed(function, *args, **kwargs) -> float:
    t = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - t


class Counter:
    def __init__(self) -> None:
        self.patches = 0
        self.batches = 0

    def __call__(self, n: int) -> None:
        self.patches += n
        self.batches += 1


@dataclass
class Row:
    configuration: str
    folds: int
    tta: bool
    patches: int
    pipeline_s: float
    network_s: float
    lower_bound_s: float

    @property
    def total_s(self) -> float:
        return self.pipeline_s + self.network_s


def measure(shape: tuple[int, int, int], repeats: int) -> tuple[list[Row], dict]:
    torch.manual_seed(0)
    info: dict = {"load_before": os.getloadavg(), "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    info["probe_flops"] = probe_conv_flops()
    arch3, arch2, source = planned_networks(info["probe_flops"] / 1e9)
    info["networks"] = source
    rows: list[Row] = []
    volume = torch.rand(3, *shape)

    # ---- 3d_fullres --------------------------------------------------------------------------------
    patch3 = arch3["patch_size"]
    net3 = build_network(arch3, 3, 1, dimension=3).eval()
    batch3 = default_batch_size(patch3, "cpu", arch3["kwargs"]["features_per_stage"][0])
    flops3 = forward_flops(unet_layers(arch3["kwargs"], patch3, 3, 1))
    t_batch3 = time_forward(net3, (batch3, 3, *patch3), repeats)
    counter = Counter()
    pipeline3 = timed(predict_volume_sliding_window, ConstantNetwork(0.5), volume, patch3, 0.5, False, batch3,
                      "cpu", progress=counter)
    pipeline3_tta = timed(predict_volume_sliding_window, ConstantNetwork(0.5), volume, patch3, 0.5, True, batch3,
                          "cpu")
    info["3d"] = {"patch": patch3, "batch": batch3, "gflop_per_patch": flops3 / 1e9, "t_batch": t_batch3,
                  "patches": counter.patches, "pipeline": pipeline3, "pipeline_tta": pipeline3_tta}
    for folds in (1, 5):
        for tta in (False, True):
            flips = 8 if tta else 1
            rows.append(Row("3d_fullres", folds, tta, counter.patches,
                            folds * (pipeline3_tta if tta else pipeline3),
                            folds * flips * counter.batches * t_batch3,
                            folds * flips * counter.patches * flops3 / info["probe_flops"]))

    # ---- 2.5d --------------------------------------------------------------------------------------
    k = 3
    patch2 = arch2["patch_size"]
    net2 = build_network(arch2, 3 * k, 1, dimension=2).eval()
    batch2 = default_batch_size([1, *patch2], "cpu", arch2["kwargs"]["features_per_stage"][0])
    flops2 = forward_flops(unet_layers(arch2["kwargs"], patch2, 3 * k, 1))
    t_batch2 = time_forward(net2, (batch2, 3 * k, *patch2), repeats)
    info["2.5d"] = {"patch": patch2, "batch": batch2, "gflop_per_patch": flops2 / 1e9, "t_batch": t_batch2}
    for orientations in (1, 3, 9):
        counter = Counter()
        one = timed(predict_volume_25d, ConstantNetwork(0.5), volume, k, patch2, orientations, 0.5, False, batch2,
                    "cpu", progress=counter)
        if orientations == 9:  # rotations of the inputs are shared by the folds, back-rotations are not
            two = timed(predict_volume_25d, [ConstantNetwork(0.5)] * 2, volume, k, patch2, orientations, 0.5, False,
                        batch2, "cpu")
            per_fold = min(max(two - one, 0.0), one)
        else:  # no rotations: count all of it per fold (slice stacks are shared in fact; an upper bound)
            per_fold = one
        shared = one - per_fold
        info["2.5d"][f"pipeline_{orientations}"] = (shared, per_fold, counter.patches)
        for folds in (1, 5):
            for tta in (False, True):
                flips = 4 if tta else 1
                rows.append(Row(f"2.5d, {orientations} orientation{'s' if orientations > 1 else ''}", folds, tta,
                                counter.patches, shared + folds * per_fold,
                                folds * flips * counter.batches * t_batch2,
                                folds * flips * counter.patches * flops2 / info["probe_flops"]))
    info["load_after"] = os.getloadavg()
    return rows, info


def end_to_end(shape: tuple[int, int, int], repeats: int, probe_gflops: float) -> list[tuple[str, float, float]]:
    """Whole-pipeline seconds (real networks, 1 fold, no TTA) next to the component estimate."""
    arch3, arch2, _ = planned_networks(probe_gflops)
    volume = torch.rand(3, *shape)
    results = []
    net3 = build_network(arch3, 3, 1, dimension=3).eval()
    batch3 = default_batch_size(arch3["patch_size"], "cpu", arch3["kwargs"]["features_per_stage"][0])
    counter = Counter()
    measured = timed(predict_volume_sliding_window, net3, volume, arch3["patch_size"], 0.5, False, batch3, "cpu",
                     progress=counter)
    pipeline = timed(predict_volume_sliding_window, ConstantNetwork(0.5), volume, arch3["patch_size"], 0.5, False,
                     batch3, "cpu")
    estimate = pipeline + counter.batches * time_forward(net3, (batch3, 3, *arch3["patch_size"]), repeats)
    results.append(("3d_fullres", estimate, measured))
    net2 = build_network(arch2, 9, 1, dimension=2).eval()
    batch2 = default_batch_size([1, *arch2["patch_size"]], "cpu", arch2["kwargs"]["features_per_stage"][0])
    counter = Counter()
    measured = timed(predict_volume_25d, net2, volume, 3, arch2["patch_size"], 1, 0.5, False, batch2, "cpu",
                     progress=counter)
    pipeline = timed(predict_volume_25d, ConstantNetwork(0.5), volume, 3, arch2["patch_size"], 1, 0.5, False,
                     batch2, "cpu")
    estimate = pipeline + counter.batches * time_forward(net2, (batch2, 9, *arch2["patch_size"]), repeats)
    results.append(("2.5d, 1 orientation", estimate, measured))
    return results


def table(rows: list[Row], info: dict, shape: tuple[int, int, int], check: list | None) -> str:
    lines = [f"Volume {shape[2]} x {shape[1]} x {shape[0]} (x, y, z), 3 input sequences, random data, CPU "
             f"({info['cpus']} cores, torch {torch.__version__}, {info['threads']} threads, {platform.processor() or platform.machine()}); "
             f"load average {info['load_before'][0]:.1f} before / {info['load_after'][0]:.1f} after "
             f"(other jobs shared the machine, so these are pessimistic).",
             f"Networks: {info['networks']}. Conv probe: {info['probe_flops'] / 1e9:.1f} GFLOP/s.",
             f"3D: {info['3d']['gflop_per_patch']:.1f} GFLOP per patch, batch {info['3d']['batch']}, "
             f"{info['3d']['t_batch']:.2f} s per batch. 2.5D: {info['2.5d']['gflop_per_patch']:.2f} GFLOP per patch, "
             f"batch {info['2.5d']['batch']}, {info['2.5d']['t_batch']:.2f} s per batch.",
             "",
             "| configuration | folds | mirroring TTA | patches per fold and mirroring | pipeline s | network s "
             "| **seconds per case** | FLOP-bound lower limit s | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.configuration} | {row.folds} | {'8 flips' if row.tta and row.configuration.startswith('3d') else '4 flips' if row.tta else 'off'} "
                     f"| {row.patches} | {row.pipeline_s:.1f} | {row.network_s:.0f} | **{row.total_s:.0f}** "
                     f"| {row.lower_bound_s:.0f} | {row.total_s / max(row.lower_bound_s, 1e-9):.2f} |")
    if check:
        lines += ["", "Check of the additive model on a small volume (1 fold, no TTA): "
                  + "; ".join(f"{name}: estimated {est:.1f} s, measured {meas:.1f} s" for name, est, meas in check) + "."]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    content = DOC.read_text() if DOC.is_file() else ""
    block = f"{START}\n{text}\n{END}"
    if START in content and END in content:
        content = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, content, flags=re.S)
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[155, 240, 240], help="volume (z, y, x)")
    parser.add_argument("--repeats", type=int, default=2, help="timed forward passes per network (median)")
    parser.add_argument("--check-shape", type=int, nargs=3, default=[48, 96, 96],
                        help="volume for the end-to-end check of the estimate")
    parser.add_argument("--no-check", action="store_true", help="skip the end-to-end check")
    parser.add_argument("--write-doc", action="store_true", help=f"put the table into {DOC.name}")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    started = time.perf_counter()
    rows, info = measure(shape, args.repeats)
    check = None if args.no_check else end_to_end(tuple(args.check_shape), args.repeats, info["probe_flops"] / 1e9)
    text = table(rows, info, shape, check)
    print(text)
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.write_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
