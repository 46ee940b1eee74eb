"""Time model of a training step on CPU: analytic FLOPs / the machine's measured conv throughput.

FLOPs of one step = 3 x forward FLOPs (backward = gradient w.r.t. input + w.r.t. weights, each about
one forward) x batch size; forward FLOPs sum ``2 k^d Cin Cout`` over the output voxels of every conv
(input voxels for transposed convs). Norm and nonlinearity layers are not counted; their cost is folded
into the throughput the probe measures on a network of the same kind.
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Sequence

from synthunet.planning.layers import Layer, patchgan_layers, unet_layers

#: forward + backward = 3 forward passes
TRAINING_FLOPS_FACTOR = 3
#: discriminator passes per GAN step: D(real), D(fake) for the D update and D(fake) for the G update
DISCRIMINATOR_PASSES = 3


def forward_flops(layers: Sequence[Layer]) -> int:
    """FLOPs of one forward pass of one sample."""
    return sum(layer.forward_flops for layer in layers)


def training_step_flops(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                        out_channels: int = 1, discriminator: dict | None = None) -> int:
    """FLOPs of one forward + backward step on a batch (generator, plus discriminator when given)."""
    flops = forward_flops(unet_layers(architecture["kwargs"], patch_size, in_channels, out_channels))
    if discriminator is not None:
        flops += DISCRIMINATOR_PASSES * forward_flops(patchgan_layers(discriminator, patch_size))
    return TRAINING_FLOPS_FACTOR * batch_size * flops


def memory_traffic_elements(layers: Sequence[Layer]) -> int:
    """Output elements of every layer of one sample: the elementwise work a step does besides FLOPs."""
    return sum(layer.output_elements for layer in layers)


def training_step_elements(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                           out_channels: int = 1, discriminator: dict | None = None) -> int:
    """Elementwise work of one step: ``3 x batch x`` output elements of every layer."""
    elements = memory_traffic_elements(unet_layers(architecture["kwargs"], patch_size, in_channels, out_channels))
    if discriminator is not None:
        elements += DISCRIMINATOR_PASSES * memory_traffic_elements(patchgan_layers(discriminator, patch_size))
    return TRAINING_FLOPS_FACTOR * batch_size * elements


class CpuSpeed:
    """``step time = flops / (gflops * 1e9) + elements * ns_per_element * 1e-9``."""

    def __init__(self, gflops: float, ns_per_element: float = 0.0) -> None:
        if gflops <= 0 or ns_per_element < 0:
            raise ValueError(f"Invalid CPU speed: {gflops} GFLOP/s, {ns_per_element} ns/element")
        self.gflops = float(gflops)
        self.ns_per_element = float(ns_per_element)

    def step_time(self, flops: float, elements: float) -> float:
        """Seconds for a step of ``flops`` FLOPs and ``elements`` elementwise outputs."""
        return flops / (self.gflops * 1e9) + elements * self.ns_per_element * 1e-9

    def as_dict(self) -> dict:
        return {"probe_gflops": round(self.gflops, 2), "probe_ns_per_element": round(self.ns_per_element, 4)}

    def __repr__(self) -> str:
        return f"CpuSpeed(gflops={self.gflops:.1f}, ns_per_element={self.ns_per_element:.3f})"


def _probe_architecture(base: int, dimension: int) -> dict:
    return {"name": "unet", "kwargs": {
        "n_stages": 3, "features_per_stage": [base, 2 * base, 4 * base], "kernel_sizes": [[3] * dimension] * 3,
        "strides": [[1] * dimension] + [[2] * dimension] * 2, "n_conv_per_stage": 2, "n_conv_per_stage_decoder": 2,
        "norm": "instance", "nonlinearity": "leaky_relu"}}


#: (base features, patch edge, batch) of the narrow and the wide probe network, per dimension
_PROBES = {3: ((8, 48, 1), (32, 32, 1)), 2: ((8, 160, 4), (32, 128, 4))}


def _time_steps(architecture: dict, patch: list[int], batch: int, in_channels: int, repeats: int) -> float:
    import torch

    from synthunet.architectures import build_network

    network = build_network(architecture, in_channels, 1, dimension=len(patch))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    x, y = torch.rand(batch, in_channels, *patch), torch.rand(batch, 1, *patch)
    times = []
    for _ in range(repeats + 1):  # the first step warms up oneDNN
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(network(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the fastest step: least disturbed by other processes


@lru_cache(maxsize=None)
def probe_cpu_speed(dimension: int = 3, repeats: int = 2, in_channels: int = 4) -> CpuSpeed:
    """Measure this machine's training speed on two small U-Nets (narrow and wide); cached per process.

    Solves ``t = flops / R + elements * tau`` from the two timings; takes a few seconds.
    """
    rows = []
    for base, edge, batch in _PROBES[dimension]:
        architecture, patch = _probe_architecture(base, dimension), [edge] * dimension
        seconds = _time_steps(architecture, patch, batch, in_channels, repeats)
        rows.append((training_step_flops(architecture, patch, batch, in_channels),
                     training_step_elements(architecture, patch, batch, in_channels), seconds))
    (f1, e1, t1), (f2, e2, t2) = rows
    determinant = f1 * e2 - f2 * e1
    inverse_rate = (t1 * e2 - t2 * e1) / determinant if determinant else 0.0
    tau = (f1 * t2 - f2 * t1) / determinant if determinant else 0.0
    if inverse_rate <= 0 or tau < 0:  # timings too noisy to separate the two terms: FLOPs only
        return CpuSpeed(gflops=(f1 + f2) / (t1 + t2) / 1e9, ns_per_element=0.0)
    return CpuSpeed(gflops=1 / inverse_rate / 1e9, ns_per_element=tau * 1e9)
