"""Data augmentation in two halves: the random draws on the data workers, the work on the training device.

A data worker draws every random number a batch needs (:func:`draw_augmentation`, NumPy's global state, so
a run with 0 workers resumes bit-identically from the RNG states in a checkpoint) and reads patches just
large enough for the drawn transforms (:func:`read_size`). Once the batch is on the training device,
:class:`BatchAugmenter` applies the draws to the whole batch in torch:

1. **spatial**: one affine map per sample (rotation about every axis (3D) or in-plane (2.5D), isotropic
   scaling, mirroring, optionally a smooth elastic displacement), all samples at once: cubic B-splines for
   the images (inputs and target move together; :mod:`~synthunet.training.data.cubic`, as batchgenerators
   did: trilinear measurably lowered the enhancing tumour), nearest neighbour for the segmentation (-1 beyond
   the read region, i.e. outside the brain). A batch whose samples are only mirrored is cropped and flipped
   exactly instead;
2. the target leaves ``data`` (``reference``: an un-augmented copy of one input channel, for seed 001's
   local loss);
3. **protocol** (off unless a recipe sets its probabilities; :class:`AugmentationParams`): a thick-slice
   acquisition (inputs and target blurred along one axis alike, as a protocol's slices blur every sequence),
   a smooth bias field on the inputs;
4. **intensity**, on the inputs only: Gaussian noise, multiplicative brightness, contrast, gamma (per
   sample with the probabilities of :class:`AugmentationParams`, per channel factors);
5. inputs, target and reference are set to exactly 0 outside the brain (``seg < 0``), as at inference.

The conventions follow batchgenerators' ``SpatialTransform`` (coordinates multiplied by the scale: a
scale above 1 zooms out) and its colour transforms (contrast keeps the channel's range, gamma keeps its
mean and standard deviation; factors below and above 1 are equally likely), so plans and recipes keep
their meaning. documentation/training.md says why this replaces batchgenerators and what it measured.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synthunet.architectures.baselines import gaussian_kernel_1d
from synthunet.training.data.cubic import CUBIC_MARGIN, cubic_grid_sample
from synthunet.training.data.sampling import SEG_OUTSIDE

#: control points per axis of the coarse elastic displacement field
ELASTIC_CONTROL_POINTS = 4


@dataclass(frozen=True)
class AugmentationParams:
    """Probabilities and ranges of the augmentations (per sample). Intensities are on the [0, 1] scale."""

    rotation_deg: float = 15.0          # +- about every axis (3D) or in-plane (2.5D); seed 000 uses +-15
    p_rotation: float = 0.2
    scale: tuple[float, float] = (0.85, 1.15)
    p_scale: float = 0.2
    mirror: bool = True                 # every spatial axis with probability 0.5
    elastic_voxels: float = 4.0         # largest displacement (voxels) of the optional elastic deformation
    p_elastic: float = 0.0              # off by default, as in nnU-Net
    noise_variance: tuple[float, float] = (0.0, 0.001)
    p_noise: float = 0.1
    brightness: tuple[float, float] = (0.75, 1.25)
    p_brightness: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    gamma: tuple[float, float] = (0.7, 1.5)
    p_gamma: float = 0.3
    # protocol change (issue 16), off by default. Slice thickness: the FWHM-like width w (voxels of the plan's
    # spacing) of a slice profile plus linear interpolation back onto the grid, i.e. a Gaussian of sigma w / 2
    # (box w: variance w^2 / 12, tent w: w^2 / 6) along one random axis, on inputs and target alike.
    slice_width_voxels: tuple[float, float] = (1.5, 3.0)
    p_slice_blur: float = 0.0
    # bias field on the inputs: exp(sum_i g_i x_i) with x_i in [-1, 1] across the patch, g_i uniform in +-range,
    # one field for all input channels (the receive coil's, shared by the sequences of one session)
    bias_log_gradient: float = 0.1
    p_bias: float = 0.0
    # extra noise on the inputs (a lower-SNR protocol), standard deviation on the [0, 1] scale
    protocol_noise_std: tuple[float, float] = (0.0, 0.05)
    p_protocol_noise: float = 0.0

    @property
    def max_rotation(self) -> float:
        return float(np.deg2rad(self.rotation_deg))


def without_intensity_augmentation(params: AugmentationParams) -> AugmentationParams:
    """The same spatial augmentation with batchgenerators' intensity augmentations switched off (the protocol
    augmentations stay as they are)."""
    return dataclasses.replace(params, p_noise=0.0, p_brightness=0.0, p_contrast=0.0, p_gamma=0.0)


# ================================================================ the draws (data workers, NumPy)
def _rotation(axis: int, angle: float, ndim: int) -> np.ndarray:
    """Rotation by ``angle`` in the plane of the two array axes other than ``axis`` (3D), or in-plane (2D)."""
    plane = [0, 1] if ndim == 2 else [a for a in range(3) if a != axis]
    matrix = np.eye(ndim)
    c, s = math.cos(angle), math.sin(angle)
    (i, j) = plane
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def _factor_around_one(low: float, high: float, rng) -> float:
    """batchgenerators' draw: below 1 or above 1 with equal chance (when the range spans 1)."""
    if rng.uniform() < 0.5 and low < 1:
        return float(rng.uniform(low, 1))
    return float(rng.uniform(max(low, 1), high))


def draw_augmentation(params: AugmentationParams, batch_size: int, ndim: int, channels: int, spatial: bool = True,
                      intensity: bool = True, rng=np.random) -> dict[str, np.ndarray]:
    """Every random number of one batch's augmentation, as arrays (float32 unless stated).

    ``affine`` (B, n, n): output offset from the patch centre -> sample offset from the read region's centre
    (rotation @ scale @ mirror); ``elastic`` (B, n, 4, ..., 4) control-point displacements in voxels (zeros
    when off); ``noise_std`` (B,); ``brightness``, ``contrast``, ``gamma`` (B, channels), 1 = untouched;
    ``slice_sigma`` (B, n): Gaussian sigma (voxels) of the thick-slice blur along each axis (0 = none);
    ``bias_gradient`` (B, n): the bias field's log-gradients (0 = none); ``noise_seed`` (1,) int64 for the
    noise generated on the device. The protocol draws consume random numbers only when their probability is
    above 0, so runs without them draw exactly what they drew before.
    """
    affine = np.tile(np.eye(ndim), (batch_size, 1, 1))
    elastic = np.zeros((batch_size, ndim, *[ELASTIC_CONTROL_POINTS] * ndim))
    if spatial:
        for b in range(batch_size):
            matrix = np.eye(ndim)
            if params.p_rotation > 0 and rng.uniform() < params.p_rotation:
                for axis in range(1 if ndim == 2 else 3):
                    matrix = matrix @ _rotation(axis, rng.uniform(-params.max_rotation, params.max_rotation), ndim)
            if params.p_scale > 0 and rng.uniform() < params.p_scale:
                matrix = matrix * _factor_around_one(*params.scale, rng)
            if params.mirror:
                matrix = matrix @ np.diag(np.where(rng.uniform(size=ndim) < 0.5, -1.0, 1.0))
            affine[b] = matrix
            if params.p_elastic > 0 and rng.uniform() < params.p_elastic:
                elastic[b] = rng.uniform(-params.elastic_voxels, params.elastic_voxels, size=elastic[b].shape)
    noise_std = np.zeros(batch_size)
    factors = {name: np.ones((batch_size, channels)) for name in ("brightness", "contrast", "gamma")}
    if intensity:
        for b in range(batch_size):
            if rng.uniform() < params.p_noise:
                noise_std[b] = math.sqrt(rng.uniform(*params.noise_variance))
            if rng.uniform() < params.p_brightness:
                factors["brightness"][b] = rng.uniform(*params.brightness, size=channels)
            if rng.uniform() < params.p_contrast:
                factors["contrast"][b] = [_factor_around_one(*params.contrast, rng) for _ in range(channels)]
            if rng.uniform() < params.p_gamma:
                factors["gamma"][b] = [_factor_around_one(*params.gamma, rng) for _ in range(channels)]
    slice_sigma, bias_gradient = np.zeros((batch_size, ndim)), np.zeros((batch_size, ndim))
    if spatial and params.p_slice_blur > 0:
        for b in range(batch_size):
            if rng.uniform() < params.p_slice_blur:
                slice_sigma[b, rng.randint(ndim)] = rng.uniform(*params.slice_width_voxels) / 2
    if intensity:
        for b in range(batch_size):
            if params.p_bias > 0 and rng.uniform() < params.p_bias:
                bias_gradient[b] = rng.uniform(-params.bias_log_gradient, params.bias_log_gradient, size=ndim)
            if params.p_protocol_noise > 0 and rng.uniform() < params.p_protocol_noise:
                noise_std[b] = math.hypot(noise_std[b], rng.uniform(*params.protocol_noise_std))
    draws = {"affine": affine, "elastic": elastic, "noise_std": noise_std, **factors, "slice_sigma": slice_sigma,
             "bias_gradient": bias_gradient}
    draws = {key: value.astype(np.float32) for key, value in draws.items()}
    draws["noise_seed"] = np.array([rng.randint(2 ** 31 - 1)], dtype=np.int64)
    return draws


def read_size(affine: np.ndarray, elastic: np.ndarray, patch_size: Sequence[int]) -> tuple[int, ...]:
    """The smallest region (per axis, the same for the whole batch) that holds every voxel the drawn
    transforms sample from, with the parity of ``patch_size`` (so an un-rotated sample is an exact crop).

    The patch's corners ``+-(P - 1) / 2`` map to at most ``|A| (P - 1) / 2`` from the centre, plus the
    largest elastic displacement; cubic interpolation at ``x`` needs the voxels ``floor(x) - 1 .. floor(x) + 2``
    and its prefilter :data:`~synthunet.training.data.cubic.CUBIC_MARGIN` more on every side. A batch that is
    only mirrored is cropped exactly and reads just the patch.
    """
    if _mirror_only(affine, elastic):
        return tuple(int(p) for p in patch_size)
    half = (np.asarray(patch_size, dtype=np.float64) - 1) / 2
    reach = np.abs(affine.astype(np.float64)) @ half                        # (B, n)
    reach = reach + np.abs(elastic).reshape(len(elastic), len(patch_size), -1).max(axis=2)
    # positions lie within reach of the centre (R - 1) / 2; cubic needs 2 voxels more, the prefilter the margin
    need = np.ceil(2 * reach.max(axis=0) - 1e-4).astype(int) + 5 + 2 * CUBIC_MARGIN
    size = np.maximum(need, patch_size)
    size += (size - np.asarray(patch_size)) % 2                              # keep the parity of the patch
    return tuple(int(s) for s in size)


def _mirror_only(affine, elastic) -> bool:
    """True when every sample's map is a diagonal of +-1 without elastic displacement (an exact crop + flips);
    numpy arrays or tensors."""
    magnitude = abs(affine) if isinstance(affine, np.ndarray) else affine.abs()
    eye = np.eye(affine.shape[-1]) if isinstance(affine, np.ndarray) else torch.eye(affine.shape[-1],
                                                                                       device=affine.device)
    return bool((magnitude == eye).all() and not elastic.any())


# ================================================================ the work (training device, torch)
class BatchAugmenter:
    """Applies a batch's draws on whatever device the batch is on (see the module docstring).

    Input batch: ``data`` (B, C [+ 1 target], *R), ``seg`` (B, 1, *R) int8, ``augmentation`` (the draws as
    tensors). Output: ``data`` (B, C, *P) float32, ``target`` (B, 1, *P) (when ``has_target``), ``seg``
    (B, 1, *P) int8, ``reference`` (B, 1, *P) (when ``reference_channel`` is set), other keys unchanged.
    """

    def __init__(self, patch_size: Sequence[int], has_target: bool = True, reference_channel: int | None = None,
                 interpolation: str = "cubic") -> None:
        if interpolation not in ("cubic", "linear"):
            raise ValueError(f"interpolation must be 'cubic' or 'linear', got {interpolation!r}")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.interpolation = interpolation
        self.has_target = has_target
        self.reference_channel = reference_channel
        self._offsets: dict[tuple, torch.Tensor] = {}

    def __call__(self, batch: dict) -> dict:
        draws = batch.pop("augmentation")
        data, seg = spatial_transform(batch["data"].float(), batch["seg"], draws["affine"], draws["elastic"],
                                      self.patch_size, self._patch_offsets(batch["data"].device), self.interpolation)
        if "slice_sigma" in draws:
            data = slice_blur(data, draws["slice_sigma"])
        if self.has_target:
            data, batch["target"] = data[:, :-1], data[:, -1:]
        if self.reference_channel is not None:
            c = self.reference_channel
            batch["reference"] = data[:, c:c + 1].clone()
        if "bias_gradient" in draws:
            data = bias_field(data, draws["bias_gradient"])
        data = intensity_transform(data, draws)
        outside = seg < 0
        for key, value in (("data", data), ("target", batch.get("target")), ("reference", batch.get("reference"))):
            if value is not None:
                batch[key] = value.masked_fill(outside, 0.0).contiguous()
        batch["seg"] = seg
        return batch

    def _patch_offsets(self, device: torch.device) -> torch.Tensor:
        """(*P, n) offsets of every output voxel from the patch centre (cached per device)."""
        key = (str(device),)
        if key not in self._offsets:
            axes = [torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2 for p in self.patch_size]
            self._offsets[key] = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        return self._offsets[key]


def _centre_crop(x: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """The centre ``patch_size`` of ``x`` (B, C, *R); ``R - P`` is even per axis (:func:`read_size`)."""
    slices = [slice((r - p) // 2, (r - p) // 2 + p) for r, p in zip(x.shape[2:], patch_size)]
    return x[(slice(None), slice(None), *slices)]


def spatial_transform(data: torch.Tensor, seg: torch.Tensor, affine: torch.Tensor, elastic: torch.Tensor,
                      patch_size: Sequence[int], offsets: torch.Tensor,
                      interpolation: str = "cubic") -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``data`` (B, C, *R, float; cubic B-splines, or trilinear with ``interpolation="linear"``) and
    ``seg`` (B, 1, *R, nearest) onto ``patch_size``: output voxel ``p`` takes the value at
    ``(R - 1) / 2 + affine @ (p - (P - 1) / 2) + elastic(p)``; 0 / -1 beyond the read region."""
    if _mirror_only(affine, elastic):
        data, seg = _centre_crop(data, patch_size), _centre_crop(seg, patch_size)
        ndim = len(patch_size)
        for axis in range(ndim):
            flip = affine[:, axis, axis] < 0
            if flip.any():
                dims = [axis + 2]
                data = torch.where(flip.view(-1, *[1] * (ndim + 1)), data.flip(dims), data)
                seg = torch.where(flip.view(-1, *[1] * (ndim + 1)), seg.flip(dims), seg)
        return data, seg
    grid = sampling_grid(affine, elastic, offsets, data.shape[2:])
    if interpolation == "cubic":
        data = cubic_grid_sample(data, grid)
    else:
        data = F.grid_sample(data, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    shifted = F.grid_sample(seg.float() - SEG_OUTSIDE, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    return data, (shifted + SEG_OUTSIDE).round().to(torch.int8)


def sampling_grid(affine: torch.Tensor, elastic: torch.Tensor, offsets: torch.Tensor,
                  region: Sequence[int]) -> torch.Tensor:
    """``grid_sample``'s grid (B, *P, n) in [-1, 1] (``align_corners=True``), last axis in (x, y[, z]) order."""
    ndim = affine.shape[-1]
    positions = torch.einsum("bij,...j->b...i", affine, offsets)                  # (B, *P, n)
    if elastic.any():
        field = F.interpolate(elastic, size=offsets.shape[:-1], mode="bilinear" if ndim == 2 else "trilinear",
                              align_corners=True)                                  # (B, n, *P)
        positions = positions + field.movedim(1, -1)
    extent = torch.tensor([max(r - 1, 1) for r in region], dtype=positions.dtype, device=positions.device)
    # position relative to the centre (R - 1) / 2, normalised: 2 x / (R - 1) maps the region onto [-1, 1]
    return (2 * positions / extent).flip(-1)


def gaussian_taps(sigma: torch.Tensor) -> torch.Tensor:
    """(B, 2R + 1) rows of :func:`~synthunet.architectures.baselines.gaussian_kernel_1d` (each truncated at its
    own ``ceil(3 sigma)``, as scipy's ``truncate=3``), zero-padded to the largest radius R; sigma 0 gives the
    identity (1 at the centre)."""
    kernels = [gaussian_kernel_1d(s) for s in sigma.tolist()]
    radius = max((len(k) // 2 for k in kernels), default=0)
    rows = [F.pad(k, (radius - len(k) // 2, radius - len(k) // 2)) for k in kernels]
    return torch.stack(rows).to(sigma.device) if rows else torch.ones((0, 1), device=sigma.device)


def slice_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur every channel of sample ``b`` of ``x`` (B, C, *P) along axis ``i`` with a Gaussian of
    ``sigma[b, i]`` voxels (B, n; 0 = not along that axis); the patch's edge voxels are repeated beyond it."""
    for axis in range(sigma.shape[1]):
        column = sigma[:, axis].to(device=x.device, dtype=torch.float32)
        if not (column > 0).any():
            continue
        taps = gaussian_taps(column).to(x.dtype)                                   # (B, 2R + 1)
        radius = (taps.shape[1] - 1) // 2
        dim = axis + 2
        length = x.shape[dim]
        index = torch.arange(-radius, length + radius, device=x.device).clamp(0, length - 1)
        padded = x.index_select(dim, index)
        blurred = torch.zeros_like(x)
        for k in range(taps.shape[1]):
            weight = taps[:, k].view(-1, *[1] * (x.ndim - 1))
            blurred = blurred + weight * padded.narrow(dim, k, length)
        x = blurred
    return x


def bias_field(x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Multiply the inputs ``x`` (B, C, *P) by ``exp(sum_i gradient[b, i] u_i)``, ``u_i`` running linearly from
    -1 to 1 across axis ``i`` of the patch; one field for every channel of a sample."""
    gradient = gradient.to(device=x.device, dtype=x.dtype)
    if not (gradient != 0).any():
        return x
    log_field = torch.zeros((x.shape[0], 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    for axis, length in enumerate(x.shape[2:]):
        u = torch.linspace(-1.0, 1.0, length, dtype=x.dtype, device=x.device) if length > 1 else \
            torch.zeros(1, dtype=x.dtype, device=x.device)
        shape = [1] * x.ndim
        shape[axis + 2] = length
        log_field = log_field + gradient[:, axis].view(-1, *[1] * (x.ndim - 1)) * u.view(shape)
    return x * torch.exp(log_field)


def intensity_transform(x: torch.Tensor, draws: dict) -> torch.Tensor:
    """Noise, brightness, contrast, gamma on the inputs ``x`` (B, C, *P), in that order (batchgenerators')."""
    shape = (x.shape[0], x.shape[1], *[1] * (x.ndim - 2))
    dims = tuple(range(2, x.ndim))
    std = draws["noise_std"]
    noisy = torch.nonzero(std > 0).flatten()
    if len(noisy):
        generator = torch.Generator(device=x.device).manual_seed(int(draws["noise_seed"].flatten()[0]))
        noise = torch.randn((len(noisy), *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
        x = x.index_add(0, noisy, noise * std[noisy].view(-1, *[1] * (x.ndim - 1)))
    brightness = draws["brightness"].view(shape)
    if (brightness != 1).any():
        x = x * brightness
    contrast = draws["contrast"].view(shape)
    if (contrast != 1).any():
        low, high, mean = x.amin(dims, keepdim=True), x.amax(dims, keepdim=True), x.mean(dims, keepdim=True)
        x = torch.where(contrast != 1, torch.clamp((x - mean) * contrast + mean, low, high), x)
    gamma = draws["gamma"].view(shape)
    if (gamma != 1).any():
        x = torch.where(gamma != 1, _gamma_keeping_stats(x, gamma, dims), x)
    return x


def _gamma_keeping_stats(x: torch.Tensor, gamma: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``((x - min) / range) ** gamma`` back on the channel's range, then shifted/scaled to its old mean and std."""
    mean, std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True, unbiased=False)
    low = x.amin(dims, keepdim=True)
    extent = x.amax(dims, keepdim=True) - low + 1e-7
    y = ((x - low) / extent).clamp_min(0) ** gamma * extent + low
    y_mean, y_std = y.mean(dims, keepdim=True), y.std(dims, keepdim=True, unbiased=False)
    return (y - y_mean) / (y_std + 1e-8) * std + mean


def draws_to_tensors(draws: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The draws as CPU tensors (they travel with the batch)."""
    return {key: torch.from_numpy(value) for key, value in draws.items()}


def split_target(batch: dict, has_target: bool = True, reference_channel: int | None = None) -> dict:
    """An un-augmented sample batch (numpy ``data`` with the target last, ``seg``) as tensors, target split off
    (validation patches)."""
    data = torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32))
    out = dict(batch, seg=torch.from_numpy(np.ascontiguousarray(batch["seg"], dtype=np.int8)))
    if has_target:
        out["target"], data = data[:, -1:].contiguous(), data[:, :-1].contiguous()
    if reference_channel is not None:
        out["reference"] = data[:, reference_channel:reference_channel + 1].clone()
    out["data"] = data
    return out
