"""What a configuration must fit: memory on the device and, on CPU, time per training step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from synthunet.errors import InputError
from synthunet.planning.layers import (DISCRIMINATORS, REALESRGAN_ADVERSARIAL_STEPS, base_features, cycle_spec,
                                       patchgan_spec, unet_discriminator_spec)
from synthunet.planning.memory import GIB, MemoryEstimate, estimate_training_memory
from synthunet.planning.timing import ARCHITECTURE_SPEED, CpuSpeed, step_elements, training_step_flops

#: RSS / allocated tensor bytes on CPU with glibc malloc (freed blocks are kept; measured 1.04-1.75,
#: the high end for small plans, whose excess is covered by the fixed overhead)
CPU_ALLOCATOR_FACTOR = 1.5
#: resident size of Python + torch + oneDNN after a first tiny training step (measured 0.40 GiB)
CPU_FIXED_OVERHEAD_GB = 0.5
#: CUDA caching allocator: reserved / allocated (not measured here; nnU-Net-like headroom)
GPU_ALLOCATOR_FACTOR = 1.1
#: CUDA context, cuDNN/cuBLAS workspaces, not seen by max_memory_allocated (typical value, not measured)
GPU_FIXED_OVERHEAD_GB = 0.75


@dataclass(frozen=True)
class Budget:
    """Limits for one device. ``speeds`` (per network dimension) and ``step_time_s``: CPU only. ``gan``: the
    discriminator a GAN trainer adds (one of :data:`DISCRIMINATORS`; True means ``"patchgan"``), None for none."""

    device: str  # "cpu" or "cuda"
    memory_gb: float
    step_time_s: float | None = None
    speeds: dict[int, CpuSpeed] | None = None
    gan: str | bool | None = None

    def __post_init__(self) -> None:
        gan = "patchgan" if self.gan is True else (self.gan or None)
        if gan is not None and gan not in DISCRIMINATORS:
            raise InputError(f"gan must be one of {', '.join(DISCRIMINATORS)}, got {self.gan!r}")
        object.__setattr__(self, "gan", gan)
        if self.device not in ("cpu", "cuda"):
            raise InputError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.memory_gb <= 0:
            raise InputError(f"The memory budget must be positive, got {self.memory_gb} GB")
        if self.device == "cpu" and (not self.speeds or not self.step_time_s or self.step_time_s <= 0):
            raise InputError("A CPU budget needs a positive step time budget and a measured CPU speed")

    def speed(self, dimension: int) -> CpuSpeed:
        """The CPU speed measured for networks of ``dimension`` (falls back to the other dimension)."""
        return self.speeds.get(dimension) or next(iter(self.speeds.values()))

    @property
    def mixed_precision(self) -> bool:
        """Trainers use fp16 autocast on CUDA, fp32 on CPU."""
        return self.device == "cuda"

    def discriminator(self, in_channels: int, patch_size: Sequence[int], architecture: dict) -> dict | None:
        """The discriminator counted when a GAN trainer is planned: ``patchgan``, the conditional PatchGAN (inputs +
        target) in every step; ``realesrgan``, the unconditional U-Net discriminator of the SRGAN recipes at the
        generator's width, in their adversarial share of the steps."""
        if self.gan == "realesrgan":
            return unet_discriminator_spec(1, patch_size, base_features(architecture), REALESRGAN_ADVERSARIAL_STEPS)
        return patchgan_spec(in_channels + 1, patch_size) if self.gan else None


@dataclass(frozen=True)
class Evaluation:
    """Estimates for one candidate (architecture, patch, batch)."""

    memory: MemoryEstimate
    device_memory_gb: float  # what the process will hold on the device: memory x allocator factor + fixed
    flops_per_step: int
    step_time_s: float | None
    fits: bool


def evaluate(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
             budget: Budget) -> Evaluation:
    """Memory and (on CPU) time of one training step, and whether they fit ``budget``. An unpaired cycle
    architecture (angan) is always counted with its reverse generator and two discriminators."""
    cycle = cycle_spec(architecture, in_channels, patch_size)
    discriminator = None if cycle else budget.discriminator(in_channels, patch_size, architecture)
    memory = estimate_training_memory(architecture, patch_size, batch_size, in_channels,
                                      mixed_precision=budget.mixed_precision, discriminator=discriminator,
                                      cycle=cycle)
    if budget.device == "cpu":
        device_gb = memory.total * CPU_ALLOCATOR_FACTOR / GIB + CPU_FIXED_OVERHEAD_GB
    else:
        device_gb = memory.total * GPU_ALLOCATOR_FACTOR / GIB + GPU_FIXED_OVERHEAD_GB
    flops = training_step_flops(architecture, patch_size, batch_size, in_channels, discriminator=discriminator,
                                cycle=cycle)
    step_time = None
    fits = device_gb <= budget.memory_gb
    if budget.device == "cpu":
        base = base_features(architecture)
        elements = step_elements(architecture, patch_size, batch_size, in_channels, discriminator=discriminator,
                                 cycle=cycle)
        # the generator's FLOPs run at its architecture's measured speed, a discriminator's at the probe's
        factor = ARCHITECTURE_SPEED.get(architecture["name"], 1.0)
        generator = flops if factor == 1.0 else training_step_flops(architecture, patch_size, batch_size, in_channels)
        step_time = budget.speed(len(patch_size)).step_time(generator / factor + (flops - generator), base, elements)
        fits = fits and step_time <= budget.step_time_s
    return Evaluation(memory=memory, device_memory_gb=device_gb, flops_per_step=flops, step_time_s=step_time,
                      fits=fits)
