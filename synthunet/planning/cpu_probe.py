"""The CPU probe: the measured training throughput of this machine (a :class:`CpuSpeed` for the time model).

A wide (base 32) and a narrow (base 8) U-Net, exactly as the planner builds them, each timed for a few AdamW
steps with the trainer's thread count; cached per process.
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Sequence

from synthunet.planning.configuration import unet_architecture
from synthunet.planning.timing import CpuSpeed, training_step_flops
from synthunet.planning.topology import plan_topology
from synthunet.utilities.threads import training_threads


def probe_architecture(base: int, dimension: int, edge: int) -> dict:
    """The network the probe times: exactly what the planner builds for an isotropic ``edge^d`` patch
    at base width ``base`` (pooled down to 4 voxels, features capped as planned)."""
    return unet_architecture(plan_topology([1.0] * dimension, [edge] * dimension), base, dimension)


#: per dimension: (base features, patch edge, batch) of the wide and the narrow probe network
PROBES = {3: ((32, 32, 2), (8, 64, 2)), 2: ((32, 128, 4), (8, 192, 8))}
PROBE_IN_CHANNELS = 4


def time_training_steps(architecture: dict, patch: Sequence[int], batch: int, in_channels: int,
                        repeats: int) -> float:
    """The fastest of ``repeats`` AdamW steps (after one warm-up step), in seconds."""
    import torch

    from synthunet.architectures import build_network

    network = build_network(architecture, in_channels, 1, dimension=len(patch))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    x, y = torch.rand(batch, in_channels, *patch), torch.rand(batch, 1, *patch)
    times = []
    for _ in range(repeats + 1):  # the first step warms up oneDNN and allocates AdamW's state
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(network(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the least disturbed by other processes


@lru_cache(maxsize=None)
def probe_cpu_speed(dimension: int = 3, repeats: int = 2, threads: int | None = None) -> CpuSpeed:
    """Time a wide (base 32) and a narrow (base 8) U-Net with the trainer's thread count (default
    :func:`training_threads`); cached per process (3D + 2D: about 13 s with 1 thread)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or training_threads())
    try:
        rates = []
        for base, edge, batch in PROBES[dimension]:
            architecture, patch = probe_architecture(base, dimension, edge), [edge] * dimension
            seconds = time_training_steps(architecture, patch, batch, PROBE_IN_CHANNELS, repeats)
            rates.append(training_step_flops(architecture, patch, batch, PROBE_IN_CHANNELS) / seconds / 1e9)
    finally:
        torch.set_num_threads(previous)
    return CpuSpeed(gflops=rates[0], gflops_narrow=rates[1])
