"""Measure the real peak memory and time of training steps of a planned network, in a fresh process.

Used by the tests and benchmarks that check the memory and time models. CPU: the peak resident set
size (``VmHWM`` of /proc/self/status, reset through /proc/self/clear_refs after the warm-up) above the
size after a warm-up step of a tiny network (which loads oneDNN and starts the thread pool). Not
``ru_maxrss``: Linux carries it over from the parent across fork/exec, so a parent that once held more
memory than the child would hide the child's peak. With ``allocator_neutral`` glibc is told to give
every block >= 128 KiB back to the system when it is freed (``MALLOC_MMAP_THRESHOLD_``), so the peak RSS
is the peak of live memory, the quantity the model estimates; without it RSS also holds freed-but-kept
heap (1.04-1.75x). CUDA: ``torch.cuda.max_memory_allocated`` with fp16 autocast, as the trainer runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Sequence


def measure_training_step(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                          steps: int = 3, device: str = "cpu", allocator_neutral: bool = True,
                          timeout: float = 600, warm_up_patch: Sequence[int] | None = None) -> dict:
    """Run ``steps`` AdamW training steps in a new Python process; return its measurements.

    ``warm_up_patch``: also warm up with the measured architecture itself on this (small) patch before the
    baseline is taken, so that the code and caches of its convolution kinds (e.g. the dilated 9^3 kernels of
    dilated_fcn, ~35 MiB of oneDNN state that a U-Net warm-up does not load) count as fixed overhead.

    Keys: ``peak_bytes`` (peak above the baseline), ``step_times`` (seconds per step, the first one
    included), ``baseline_bytes``.
    """
    job = {"architecture": architecture, "patch_size": list(patch_size), "batch_size": batch_size,
           "in_channels": in_channels, "steps": steps, "device": device,
           "warm_up_patch": list(warm_up_patch) if warm_up_patch else None}
    environment = dict(os.environ)
    if allocator_neutral:
        environment["MALLOC_MMAP_THRESHOLD_"] = "131072"
    result = subprocess.run([sys.executable, "-m", "synthunet.planning.measure", json.dumps(job)], env=environment,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"Measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _resident_bytes() -> int:
    return _status_bytes("VmRSS")


def _peak_resident_bytes() -> int:
    """Peak RSS of this process image (since the last :func:`_reset_peak`)."""
    return _status_bytes("VmHWM")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak RSS to the current RSS (Linux >= 4.0)
    except OSError:
        pass  # then the peak since exec: the warm-up is smaller than any measured plan


def _steps(network, optimizer, x, y, steps: int, autocast: bool) -> list[float]:
    import torch

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=autocast):
            loss = torch.nn.functional.l1_loss(network(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12.0)
        optimizer.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _run(job: dict) -> dict:
    import torch

    from synthunet.architectures import build_network

    dimension, device = len(job["patch_size"]), torch.device(job["device"])
    warm_up = {"name": "unet", "kwargs": {"n_stages": 2, "features_per_stage": [4, 8],
                                         "kernel_sizes": [[3] * dimension] * 2,
                                         "strides": [[1] * dimension, [2] * dimension]}}
    small = build_network(warm_up, 2, 1, dimension=dimension).to(device)
    _steps(small, torch.optim.AdamW(small.parameters()), torch.rand(1, 2, *[8] * dimension, device=device),
           torch.rand(1, 1, *[8] * dimension, device=device), 2, device.type == "cuda")
    del small
    if job.get("warm_up_patch"):
        patch = job["warm_up_patch"]
        small = build_network(job["architecture"], job["in_channels"], 1, dimension=dimension).to(device)
        _steps(small, torch.optim.AdamW(small.parameters()), torch.rand(1, job["in_channels"], *patch, device=device),
               torch.rand(1, 1, *patch, device=device), 1, device.type == "cuda")
        del small
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = _resident_bytes()
        _reset_peak()
    network = build_network(job["architecture"], job["in_channels"], 1, dimension=dimension).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.rand(job["batch_size"], job["in_channels"], *job["patch_size"], device=device)
    y = torch.rand(job["batch_size"], 1, *job["patch_size"], device=device)
    times = _steps(network, optimizer, x, y, job["steps"], device.type == "cuda")
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _peak_resident_bytes()
    return {"peak_bytes": peak - baseline, "baseline_bytes": baseline, "step_times": times,
            "threads": torch.get_num_threads(), "device": device.type}


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.argv[1]))))
