"""The CPU time model per architecture: planned step time against real training steps, on this machine.

    python benchmarks/architecture_speed.py [--fingerprint_shape 80 96 80] [--spacing 2] [--budget_s 1.0]

The time model (documentation/planning.md) divides a step's convolution FLOPs by the rate the probe measures on
U-Nets. Other architectures run their FLOPs at another rate (other kernels, norms and activations); the planner
corrects that with ``synthunet.planning.timing.ARCHITECTURE_SPEED``. This script measures what that table should
hold: for each architecture it plans a Dataset501-like fingerprint with this machine's probe (1 torch thread, as
the trainer), times the planned network's real AdamW steps (fastest of three after a warm-up, random data, the
generator alone: no discriminator, no prior) and prints estimate / measured and the speed factor that would have
made the estimate exact. The U-Net rows are the control: the probe times U-Nets, so their factor is 1 by
definition and their est/meas shows the time model's own error. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

#: (architecture, configuration) pairs the planner offers on CPU; angan is timed by benchmarks/unpaired.py
CASES = (("unet", "3d_fullres"), ("unet", "2.5d"), ("hrfcn", "3d_fullres"), ("dilated_fcn", "3d_fullres"),
         ("rrdb", "3d_fullres"), ("unet25d_brasyn", "2.5d"))


def fingerprint(shape: Sequence[int], spacing: float) -> dict:
    """A Dataset501-like fingerprint: 10 cases of about ``shape`` voxels at ``spacing`` mm, four sequences."""
    rng = np.random.default_rng(0)
    return {"dataset_name": "Dataset999_Speed", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
            "label_values": [], "spacings": [[spacing] * 3] * 10,
            "shapes_after_cropping": [[int(v * rng.uniform(0.95, 1.05)) for v in shape] for _ in range(10)]}


def measure(shape: Sequence[int], spacing: float, budget_s: float, repeats: int) -> list[dict]:
    import torch

    from synthunet.planning import plans_for_fingerprint
    from synthunet.planning.cpu_probe import probe_cpu_speed, time_training_steps
    from synthunet.planning.timing import ARCHITECTURE_SPEED

    torch.set_num_threads(1)
    rows = []
    for architecture, configuration in CASES:
        plans = plans_for_fingerprint(fingerprint(shape, spacing), device="cpu", configurations=[configuration],
                                      step_time_budget_s=budget_s, architecture=architecture)
        block = plans["configurations"][configuration]
        estimate = block["estimates"]["step_time_s"]
        in_channels = block["estimates"]["assumed_in_channels"]
        measured = time_training_steps(block["architecture"], block["patch_size"], block["batch_size"], in_channels,
                                       repeats)
        factor = ARCHITECTURE_SPEED.get(architecture, 1.0)
        rows.append({"architecture": architecture, "configuration": configuration, "patch": block["patch_size"],
                     "batch": block["batch_size"], "gflop": block["estimates"]["flops_per_step"] / 1e9,
                     "estimate": estimate, "measured": measured, "factor_in_use": factor,
                     "probe": probe_cpu_speed(2 if configuration == "2.5d" else 3)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| architecture | configuration | patch x batch | GFLOP/step | speed factor in use | estimate s | "
             "measured s | est/meas | measured speed factor |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["estimate"] / r["measured"]
        implied = r["factor_in_use"] * ratio  # the factor that would have made the estimate exact
        lines.append(f"| {r['architecture']} | {r['configuration']} | {'x'.join(map(str, r['patch']))} x {r['batch']} "
                     f"| {r['gflop']:.1f} | {r['factor_in_use']:.2f} | {r['estimate']:.3f} | {r['measured']:.3f} "
                     f"| {ratio:.2f} | {implied:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fingerprint_shape", type=int, nargs=3, default=[80, 96, 80])
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--budget_s", type=float, default=1.0, help="the planner's step-time ceiling")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    rows = measure(args.fingerprint_shape, args.spacing, args.budget_s, args.repeats)
    probes = {r["configuration"]: r["probe"] for r in rows}
    print(f"{started}; probe (1 thread): " + "; ".join(f"{c}: {p}" for c, p in probes.items()))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
