"""Sliding-window prediction with Gaussian importance weighting, batched patches and mirror TTA.

Works for any number of spatial axes: the network maps ``(B, C_in, *patch)`` to ``(B, C_out, *patch)``.
:func:`predict_volume_sliding_window` is the 3D entry point (also used by training for its final
validation); the 2.5D code runs the same machinery with ``(1, h, w)`` patches.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from synthunet.errors import InputError

#: smallest Gaussian weight relative to the peak: keeps patch borders from being weighted by ~1e-10
GAUSSIAN_MIN_WEIGHT = 1e-4
#: patches whose inputs all lie within this of 0 hold no brain (outside the brain inputs are 0) and are skipped
EMPTY_THRESHOLD = 1e-4
#: voxels one CPU forward pass should hold (patches x voxels per patch), when no batch size is given; measured
#: on a 2-core AVX2 CPU (documentation/benchmarks.md): 4 patches of 160 x 160 run 25 % faster than 20, and 4 of
#: 32 x 48 x 32 faster than 10; a single patch is 2-4x slower per voxel than two, hence CPU_MIN_BATCH
CPU_VOXELS_PER_BATCH = 2 * 64 ** 3 // 4
#: the same for channels-last 3D batches (:func:`use_channels_last`): 4 windows of 32 x 48 x 32 ran 10 % faster than 2
CPU_VOXELS_PER_BATCH_CHANNELS_LAST = 64 ** 3
CPU_MIN_BATCH = 2
#: largest inference tile on the CPU (voxels): a 1 mm brain's bounding box (about 140 x 170 x 140) fits in one
CPU_TILE_VOXELS = 160 * 192 * 160


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8,
                            min_weight: float = GAUSSIAN_MIN_WEIGHT, device: torch.device | str = "cpu",
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Separable Gaussian over a patch (sigma = patch * sigma_scale), peak 1, clamped below at ``min_weight``."""
    profiles = []
    for size in patch_size:
        centre = (size - 1) / 2.0
        sigma = max(size * sigma_scale, 1e-6)
        coords = np.arange(size, dtype=np.float64) - centre
        profiles.append(np.exp(-0.5 * (coords / sigma) ** 2))
    weights = profiles[0]
    for profile in profiles[1:]:
        weights = np.multiply.outer(weights, profile)
    weights = weights / weights.max()
    weights = np.maximum(weights, min_weight)
    return torch.as_tensor(weights, dtype=dtype, device=device)


def sliding_window_starts(image_size: Sequence[int], patch_size: Sequence[int], step_size: float) -> list[list[int]]:
    """Patch start positions per axis: first at 0, last flush with the end, evenly spread, overlap >= 1 - step_size.

    ``image_size`` must be >= ``patch_size`` on every axis (pad first).
    """
    if not 0 < step_size <= 1:
        raise InputError(f"step_size must be in (0, 1], got {step_size}")
    starts = []
    for image, patch in zip(image_size, patch_size):
        if image < patch:
            raise ValueError(f"image size {tuple(image_size)} is smaller than the patch {tuple(patch_size)}; pad first")
        target_step = max(patch * step_size, 1.0)
        n_steps = int(math.ceil((image - patch) / target_step)) + 1
        if n_steps == 1:
            starts.append([0])
            continue
        actual_step = (image - patch) / (n_steps - 1)
        starts.append([int(round(actual_step * i)) for i in range(n_steps)])
    return starts


def inference_tile_size(image_size: Sequence[int], patch_size: Sequence[int], divisor: Sequence[int] | int = 1,
                        max_voxels: int = CPU_TILE_VOXELS) -> list[int]:
    """The window for inference of a fully convolutional network: the whole image when it fits in ``max_voxels``.

    Each axis becomes the image size rounded up to a multiple of ``divisor`` (the network's total stride), never
    smaller than the training ``patch_size``; a divisor of 0 keeps that axis at the patch size (the slice axis of
    2.5D windows). While the tile holds more than ``max_voxels``, its longest axis
    (relative to the patch) shrinks by one ``divisor``; it never shrinks below the patch. Fewer, larger windows
    compute each voxel once instead of about 2 ** dims times at step 0.5.
    """
    dims = len(patch_size)
    divisor = [int(divisor)] * dims if isinstance(divisor, int) else [int(d) for d in divisor]
    tile = [int(p) if d == 0 else max(int(p), int(math.ceil(s / d)) * d)
            for s, p, d in zip(image_size, patch_size, divisor)]
    while int(np.prod(tile)) > max_voxels:
        shrinkable = [a for a in range(dims) if divisor[a] > 0 and tile[a] - divisor[a] >= patch_size[a]]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda a: tile[a] / patch_size[a])
        tile[axis] -= divisor[axis]
    return tile


def mirror_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``mirror_axes`` (the empty one first): 8 for three axes, 4 for two."""
    axes = tuple(mirror_axes)
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def _forward(network: nn.Module | Callable, x: torch.Tensor) -> torch.Tensor:
    out = network(x)
    if isinstance(out, (list, tuple)):  # deep supervision: the full-resolution output comes first
        out = out[0]
    return out.float()


def predict_patches(network: nn.Module | Callable, x: torch.Tensor, mirror_axes: Sequence[int] = (),
                    use_amp: bool = True) -> torch.Tensor:
    """Network output for a batch of patches, averaged over mirrorings of ``mirror_axes`` (spatial axes, 0-based).

    Each mirrored input's prediction is flipped back before averaging. Mixed precision (float16
    autocast) is used on CUDA only; CPU and MPS run in float32.
    """
    amp = use_amp and x.device.type == "cuda"
    combos = mirror_combinations(mirror_axes)
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp) if amp else contextlib.nullcontext():
        result = None
        for combo in combos:
            dims = [axis + 2 for axis in combo]
            inp = torch.flip(x, dims) if dims else x
            out = _forward(network, inp)
            if dims:
                out = torch.flip(out, dims)
            result = out if result is None else result + out
    return result / len(combos)


def default_batch_size(patch_size: Sequence[int], device: torch.device | str, first_stage_features: int = 32,
                       channels_last: bool = False) -> int:
    """A batch size for inference: a voxel budget on CPU (larger for ``channels_last`` batches), a share of the free
    memory on CUDA.

    Inference keeps no activations for backpropagation, so it affords more than the training batch.
    """
    device = torch.device(device)
    voxels = int(np.prod(patch_size))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        bytes_per_voxel = 12 * max(first_stage_features, 8) * 4  # live feature maps at full resolution, fp32
        budget = int(0.3 * free / bytes_per_voxel)
        return int(max(1, min(128, budget // voxels)))
    budget = CPU_VOXELS_PER_BATCH_CHANNELS_LAST if channels_last else CPU_VOXELS_PER_BATCH
    smallest = CPU_MIN_BATCH if voxels <= 2 * CPU_VOXELS_PER_BATCH else 1  # whole-volume tiles: one at a time
    return int(max(smallest, min(64, budget // voxels)))


def split_prior(network: nn.Module | Callable) -> tuple[nn.Module | None, nn.Module | Callable | None]:
    """``(prior, residual network)`` of a network that adds a closed-form prior (``prior(x) + network(x)``, e.g.
    :class:`synthunet.architectures.model_network.PriorResidual`); ``(network, None)`` for a closed-form model
    itself (a class attribute ``closed_form = True``: the baselines); else ``(None, network)``."""
    if getattr(network, "closed_form", False):
        return network, None
    prior, residual = getattr(network, "prior", None), getattr(network, "network", None)
    if getattr(prior, "closed_form", False) and isinstance(residual, nn.Module):
        return prior, residual
    return None, network


def use_channels_last(network: nn.Module | Callable, device: torch.device | str, spatial_dims: int) -> bool:
    """Whether ``network`` gets channels-last batches: 3D windows on a CPU, for a network that contains a module
    with the class attribute ``channels_last_on_cpu = True`` (:class:`synthunet.architectures.unet.PlainUNet`:
    25 % faster on a 2-core AVX2 CPU, documentation/predict.md)."""
    return torch.device(device).type == "cpu" and spatial_dims == 3 and isinstance(network, nn.Module) and any(
        getattr(m, "channels_last_on_cpu", False) for m in network.modules())


def _pad_to_patch(data: torch.Tensor, patch_size: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the spatial axes of ``(C, *spatial)`` symmetrically up to the patch size; return the crop back."""
    spatial = data.shape[1:]
    pads, crop = [], [slice(None)]
    for size, patch in zip(spatial, patch_size):
        missing = max(patch - size, 0)
        before = missing // 2
        pads.append((before, missing - before))
        crop.append(slice(before, before + size))
    if not any(sum(p) for p in pads):
        return data, tuple(crop)
    flat = [value for pair in reversed(pads) for value in pair]  # torch.nn.functional.pad wants last axis first
    return torch.nn.functional.pad(data, flat), tuple(crop)


@torch.inference_mode()
def predict_sliding_window(network: nn.Module | Callable, data: torch.Tensor | np.ndarray, patch_size: Sequence[int],
                           step_size: float = 0.5, mirror_axes: Sequence[int] = (), batch_size: int | None = None,
                           device: torch.device | str | None = None, use_gaussian: bool = True,
                           use_amp: bool = True, first_stage_features: int = 32, skip_empty: bool = True,
                           progress: Callable[[int], None] | None = None,
                           tile_divisor: Sequence[int] | None = None, prior_per_window: bool = False,
                           channels_last: bool | None = None) -> torch.Tensor:
    """Predict ``(C_in, *spatial)`` patch by patch; return ``(C_out, *spatial)`` float32 on the CPU.

    A network with a closed-form prior (:func:`split_prior`) gets its prior computed once on the whole volume and
    added to the windows' weighted mean of its residual network, and a closed-form model alone is computed on the
    whole volume: the prior's local means then do not depend on where windows cut the image, and no voxel's prior
    is computed twice. ``prior_per_window`` computes it inside every window instead (as training does on its
    patches; the behaviour before 2026-12-05).

    ``tile_divisor`` (a fully convolutional network's total stride per axis): windows are
    :func:`inference_tile_size` (the whole volume when it fits) instead of ``patch_size``.

    Patches overlap by ``1 - step_size``; each is weighted by a Gaussian (sigma = patch / 8) and the sum
    is divided by the summed weights. Volumes smaller than the patch are zero-padded and cropped back.
    With ``skip_empty``, patches whose inputs are all within :data:`EMPTY_THRESHOLD` of 0 (background,
    the empty corners of rotated volumes) are not predicted; voxels no predicted patch covers are 0.
    ``progress`` is called with the number of patches done after each batch. ``channels_last`` (default:
    :func:`use_channels_last`) hands the network channels-last batches. On a CPU a batch holds at least
    :data:`CPU_MIN_BATCH` windows (a lone last window is run beside a copy of itself: PyTorch runs a single small
    3D window through a convolution several times slower).
    """
    data = torch.as_tensor(data)
    if data.ndim != len(patch_size) + 1:
        raise ValueError(f"data must be (C, *spatial) with {len(patch_size)} spatial axes, "
                         f"got shape {tuple(data.shape)}")
    device = torch.device(device) if device is not None else data.device
    patch_size = [int(p) for p in patch_size]
    if tile_divisor is not None:
        patch_size = inference_tile_size(data.shape[1:], patch_size, tile_divisor)
    padded, crop = _pad_to_patch(data.float(), patch_size)
    spatial = padded.shape[1:]
    starts = sliding_window_starts(spatial, patch_size, step_size)
    windows = [tuple(slice(s, s + p) for s, p in zip(start, patch_size)) for start in itertools.product(*starts)]
    padded = padded.to(device)
    prior, network = (None, network) if prior_per_window else split_prior(network)
    if network is None:  # a closed-form model: the whole volume at once (it is flip-symmetric: no mirroring)
        return _forward(prior, padded[None])[0][crop].cpu()
    if channels_last is None:
        channels_last = use_channels_last(network, device, len(patch_size))
    if batch_size is None:
        batch_size = default_batch_size(patch_size, device, first_stage_features, channels_last)
    if skip_empty:
        active = (padded.abs() > EMPTY_THRESHOLD).any(0)
        windows = [w for w in windows if bool(active[w].any())]
    weights = gaussian_importance_map(patch_size, device=device) if use_gaussian else \
        torch.ones(patch_size, device=device)
    accumulated: torch.Tensor | None = None
    weight_sum = torch.zeros(spatial, dtype=torch.float32, device=device)
    for first in range(0, len(windows), batch_size):
        batch_windows = windows[first:first + batch_size]
        x = torch.stack([padded[(slice(None),) + w] for w in batch_windows])
        lone = device.type == "cpu" and len(batch_windows) < CPU_MIN_BATCH <= batch_size
        if lone:
            x = torch.cat([x] * CPU_MIN_BATCH)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        y = predict_patches(network, x, mirror_axes, use_amp)[:len(batch_windows)]
        if tuple(y.shape[2:]) != tuple(patch_size):
            raise RuntimeError(f"The network returned spatial shape {tuple(y.shape[2:])} for a patch of "
                               f"{tuple(patch_size)}; it must keep the patch size")
        if accumulated is None:
            accumulated = torch.zeros((y.shape[1],) + tuple(spatial), dtype=torch.float32, device=device)
        y = y * weights
        for j, window in enumerate(batch_windows):
            accumulated[(slice(None),) + window] += y[j]
            weight_sum[window] += weights
        if progress is not None:
            progress(len(batch_windows))
    if accumulated is None:  # nothing but background: one zero output channel
        accumulated = torch.zeros((1,) + tuple(spatial), dtype=torch.float32, device=device)
    accumulated /= weight_sum.clamp_min(GAUSSIAN_MIN_WEIGHT * 1e-3)  # uncovered voxels: 0 / tiny = 0
    if prior is not None:
        accumulated += _forward(prior, padded[None])[0]
    return accumulated[crop].cpu()


def predict_volume_sliding_window(network: nn.Module | Callable, data: torch.Tensor | np.ndarray,
                                  patch_size: Sequence[int], step_size: float = 0.5, use_mirroring: bool = True,
                                  batch_size: int | None = None, device: torch.device | str | None = None,
                                  mirror_axes: Sequence[int] = (0, 1, 2), use_amp: bool = True,
                                  skip_empty: bool = True,
                                  progress: Callable[[int], None] | None = None,
                                  tile_divisor: Sequence[int] | None = None, prior_per_window: bool = False
                                  ) -> torch.Tensor:
    """3D sliding-window prediction of a ``(C, z, y, x)`` volume; returns ``(C_out, z, y, x)`` float32 on the CPU.

    With ``use_mirroring`` the 8 flips of the three axes are averaged (test-time augmentation);
    ``tile_divisor`` and ``prior_per_window``: see :func:`predict_sliding_window`.
    """
    if len(patch_size) != 3:
        raise ValueError(f"3D prediction needs a 3D patch size, got {tuple(patch_size)}")
    return predict_sliding_window(network, data, patch_size, step_size,
                                  mirror_axes=mirror_axes if use_mirroring else (), batch_size=batch_size,
                                  device=device, use_amp=use_amp, skip_empty=skip_empty, progress=progress,
                                  tile_divisor=tile_divisor, prior_per_window=prior_per_window)


def count_windows(spatial_shape: Sequence[int], patch_size: Sequence[int], step_size: float) -> int:
    """How many patches cover a volume (after padding to the patch), empty ones included."""
    padded = [max(s, p) for s, p in zip(spatial_shape, patch_size)]
    return int(np.prod([len(s) for s in sliding_window_starts(padded, patch_size, step_size)]))
