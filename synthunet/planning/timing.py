"""Time model of a training step on CPU: analytic FLOPs / the machine's measured conv throughput.

FLOPs of one step = 3 x forward FLOPs (backward = gradient w.r.t. input + w.r.t. weights, each about
one forward) x batch size; forward FLOPs sum ``2 k^d Cin Cout`` over the output voxels of every conv
(input voxels for transposed convs). Norm and nonlinearity layers are not counted; their cost is folded
into the throughput the probe (:mod:`synthunet.planning.cpu_probe`) measures on networks of the same kind (one
wide, one narrow).
"""
from __future__ import annotations

import math
from typing import Sequence

from synthunet.errors import InputError
from synthunet.planning.layers import (Layer, architecture_layers, discriminator_layers, patchgan_layers,
                                       reverse_layers)

#: forward + backward = 3 forward passes
TRAINING_FLOPS_FACTOR = 3
#: discriminator passes per GAN step: D(real), D(fake) for the D update and D(fake) for the G update
DISCRIMINATOR_PASSES = 3


def forward_flops(layers: Sequence[Layer]) -> int:
    """FLOPs of one forward pass of one sample."""
    return sum(layer.forward_flops for layer in layers)


def training_step_flops(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                        out_channels: int = 1, discriminator: dict | None = None, cycle: dict | None = None) -> int:
    """FLOPs of one forward + backward step on a batch (generator, plus discriminator when given, averaged over
    the steps: charged in its spec's ``steps_fraction`` of them; with a ``cycle`` spec G and R twice each and
    DISCRIMINATOR_PASSES passes of each of the two discriminators)."""
    flops = forward_flops(architecture_layers(architecture, patch_size, in_channels, out_channels))
    if discriminator is not None:
        flops += round(DISCRIMINATOR_PASSES * discriminator.get("steps_fraction", 1.0)
                       * forward_flops(discriminator_layers(discriminator, patch_size)))
    if cycle is not None:
        flops = 2 * (flops + forward_flops(reverse_layers(cycle, patch_size)))
        flops += sum(DISCRIMINATOR_PASSES * forward_flops(patchgan_layers(spec, patch_size))
                     for spec in cycle["discriminators"])
    return TRAINING_FLOPS_FACTOR * batch_size * flops


#: measured training speed of each architecture's FLOPs relative to the U-Net the probe times (same base width),
#: on a 2-core AVX2 CPU with 1 thread (benchmarks/architecture_speed.py; documentation/planning.md, "Time model")
ARCHITECTURE_SPEED: dict[str, float] = {"dilated_fcn": 1.3, "rrdb": 0.6, "unet25d_brasyn": 0.33}

#: steps whose layer outputs exceed this many elements (B x sum over layers) run slower than the probe
#: (page faults of large fresh allocations, cache and TLB misses); calibrated on a 2-core VM, see planning.md
LARGE_STEP_ELEMENTS = 1.5e8
LARGE_STEP_EXPONENT = 0.4


def step_elements(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                  out_channels: int = 1, discriminator: dict | None = None, cycle: dict | None = None) -> int:
    """``batch x`` the output elements of every layer: the size of the data one step streams through."""
    layers = architecture_layers(architecture, patch_size, in_channels, out_channels)
    if discriminator is not None:
        layers += 2 * discriminator_layers(discriminator, patch_size)
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
