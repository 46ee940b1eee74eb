"""Time model of a training step on CPU: analytic FLOPs / the machine's measured conv throughput.

FLOPs of one step = 3 x forward FLOPs (backward = gradient w.r.t. input + w.r.t. weights, each about
one forward) x batch size; forward FLOPs sum ``2 k^d Cin Cout`` over the output voxels of every conv
(input voxels for transposed convs). Norm and nonlinearity layers are not counted; their cost is folded
into the throughput the probe measures on networks of the same kind (one wide, one narrow).
"""
from __future__ import annotations

import math
import os
import time
from functools import lru_cache
from typing import Sequence

from synthunet.errors import InputError
from synthunet.planning.layers import Layer, architecture_layers, patchgan_layers, reverse_layers

#: forward + backward = 3 forward passes
TRAINING_FLOPS_FACTOR = 3
#: discriminator passes per GAN step: D(real), D(fake) for the D update and D(fake) for the G update
DISCRIMINATOR_PASSES = 3


def forward_flops(layers: Sequence[Layer]) -> int:
    """FLOPs of one forward pass of one sample."""
    return sum(layer.forward_flops for layer in layers)


def training_step_flops(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                        out_channels: int = 1, discriminator: dict | None = None, cycle: dict | None = None) -> int:
    """FLOPs of one forward + backward step on a batch (generator, plus discriminator when given; with a
    ``cycle`` spec G and R twice each and DISCRIMINATOR_PASSES passes of each of the two discriminators)."""
    flops = forward_flops(architecture_layers(architecture, patch_size, in_channels, out_channels))
    if discriminator is not None:
        flops += DISCRIMINATOR_PASSES * forward_flops(patchgan_layers(discriminator, patch_size))
    if cycle is not None:
        flops = 2 * (flops + forward_flops(reverse_layers(cycle, patch_size)))
        flops += sum(DISCRIMINATOR_PASSES * forward_flops(patchgan_layers(spec, patch_size))
                     for spec in cycle["discriminators"])
    return TRAINING_FLOPS_FACTOR * batch_size * flops


#: steps whose layer outputs exceed this many elements (B x sum over layers) run slower than the probe
#: (page faults of large fresh allocations, cache and TLB misses); calibrated on a 2-core VM, see planning.md
LARGE_STEP_ELEMENTS = 1.5e8
LARGE_STEP_EXPONENT = 0.4


def step_elements(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                  out_channels: int = 1, discriminator: dict | None = None, cycle: dict | None = None) -> int:
    """``batch x`` the output elements of every layer: the size of the data one step streams through."""
    layers = architecture_layers(architecture, patch_size, in_channels, out_channels)
    if discriminator is not None:
        layers += 2 * patchgan_layers(discriminator, patch_size)
    if cycle is not None:
        layers = 2 * (layers + reverse_layers(cycle, patch_size))
        for spec in cycle["discriminators"]:
            layers += 2 * patchgan_layers(spec, patch_size)
    return batch_size * sum(layer.output_elements for layer in layers)


def large_step_factor(elements: float) -> float:
    """Slow-down of steps above LARGE_STEP_ELEMENTS: ``(LARGE_STEP_ELEMENTS / elements) ^ 0.4``, else 1."""
    return min(1.0, LARGE_STEP_ELEMENTS / max(elements, 1.0)) ** LARGE_STEP_EXPONENT


class CpuSpeed:
    """Achieved training throughput of this CPU, by network width.

    ``gflops``: GFLOP/s of a U-Net with base width 32 (the contract's ``probe_gflops``);
    ``gflops_narrow``: of base width 8. Narrow layers use the vector units less well, so a network of
    base width ``b`` is assumed to run at a rate interpolated geometrically between the two
    (clamped outside [8, 32]): ``step time = FLOPs / (rate(b) * large_step_factor(elements))``.
    """

    NARROW, WIDE = 8, 32

    def __init__(self, gflops: float, gflops_narrow: float | None = None) -> None:
        gflops_narrow = gflops if gflops_narrow is None else gflops_narrow
        if gflops <= 0 or gflops_narrow <= 0:
            raise InputError(f"Invalid CPU speed: {gflops} / {gflops_narrow} GFLOP/s")
        self.gflops, self.gflops_narrow = float(gflops), float(gflops_narrow)

    def rate(self, base_features: int) -> float:
        """FLOP/s for a network whose first stage has ``base_features`` features."""
        position = (math.log2(min(max(base_features, self.NARROW), self.WIDE)) - math.log2(self.NARROW)) / \
            (math.log2(self.WIDE) - math.log2(self.NARROW))
        return 1e9 * self.gflops_narrow ** (1 - position) * self.gflops ** position

    def step_time(self, flops: float, base_features: int, elements: float = 0.0) -> float:
        """Seconds for a step of ``flops`` FLOPs of a network of base width ``base_features`` whose layer
        outputs total ``elements`` (see :func:`step_elements`)."""
        return flops / (self.rate(base_features) * large_step_factor(elements))

    def as_dict(self) -> dict:
        return {"gflops_base32": round(self.gflops, 2), "gflops_base8": round(self.gflops_narrow, 2)}

    def __repr__(self) -> str:
        return f"CpuSpeed(gflops={self.gflops:.1f}, gflops_narrow={self.gflops_narrow:.1f})"


def probe_architecture(base: int, dimension: int, edge: int) -> dict:
    """The network the probe times: exactly what the planner builds for an isotropic ``edge^d`` patch
    at base width ``base`` (pooled down to 4 voxels, features capped as planned)."""
    from synthunet.planning.configuration import unet_architecture
    from synthunet.planning.topology import plan_topology

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


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def training_threads() -> int:
    """Torch threads the CPU trainer will use (the rule of ``synthunet.training``): ``$SYNTHUNET_NUM_THREADS``,
    else the cores its data workers leave free; workers: ``$SYNTHUNET_NUM_WORKERS``, else half the cores (1-8).
    Never more than torch's current setting."""
    import torch

    from synthunet import env

    threads = env.get(env.NUM_THREADS, "")
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    workers = env.get(env.NUM_WORKERS, "")
    workers = int(workers) if workers.isdigit() else max(1, min(8, _cores() // 2))
    return min(torch.get_num_threads(), max(1, _cores() - workers))


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
