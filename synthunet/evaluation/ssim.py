"""Structural similarity (SSIM) and PSNR in torch, for evaluation and for training.

SSIM follows Wang et al. 2004 with a Gaussian window, as scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``:

* window: Gaussian, sigma = 1.5, truncated at 3.5 sigma, i.e. radius 5 and 11 voxels wide per axis,
  normalised to sum 1; applied separably along every spatial axis (2D or 3D);
* constants: ``C1 = (K1 * data_range)^2``, ``C2 = (K2 * data_range)^2`` with K1 = 0.01, K2 = 0.03;
* population (not sample) variances and covariance;
* the SSIM *map* is defined at every voxel; at the volume border the image is extended by mirror
  reflection including the edge voxel (``d c b a | a b c d``, scipy's ``mode="reflect"``), exactly as
  scikit-image does, so :func:`ssim_map` equals ``structural_similarity(..., full=True)[1]`` everywhere;
* the full-image *mean* (:func:`ssim` without a mask) averages the map over the interior only, i.e.
  ignoring ``radius`` voxels at every border, as scikit-image (and torchmetrics) do. Interior values do
  not depend on the border extension at all, so only "valid" filtering is computed there.

Inputs are tensors shaped ``(B, C, *spatial)`` with 2 or 3 spatial axes. Everything is differentiable,
works on any device and in any floating dtype; evaluation uses float64, training may use float32
(variances are computed as ``E[x^2] - E[x]^2``, which is accurate enough for intensities of order 1).

Typical training use::

    from synthunet.evaluation.ssim import ssim, ssim_map
    loss = 1 - ssim(prediction, target, data_range=1.0)              # mean over the patch interior
    val = ssim(prediction, target, data_range=1.0, mask=brain_mask)  # mean of the map inside a mask
"""
from __future__ import annotations

import numpy as np
import torch

from synthunet.errors import InputError

SIGMA = 1.5
TRUNCATE = 3.5
K1 = 0.01
K2 = 0.03

__all__ = ["SIGMA", "TRUNCATE", "K1", "K2", "window_radius", "window_size", "gaussian_window", "gaussian_filter",
           "ssim_map", "ssim", "psnr"]


def window_radius(sigma: float = SIGMA, truncate: float = TRUNCATE) -> int:
    """Radius of the truncated Gaussian window (5 for sigma 1.5, truncate 3.5: an 11-voxel window)."""
    return int(truncate * sigma + 0.5)


def window_size(sigma: float = SIGMA, truncate: float = TRUNCATE) -> int:
    """Width of the window in voxels per axis (11); the evaluation needs images at least this large."""
    return 2 * window_radius(sigma, truncate) + 1


def gaussian_window(sigma: float = SIGMA, truncate: float = TRUNCATE, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The normalised 1D Gaussian window (length ``2 * radius + 1``), as scipy.ndimage builds it."""
    radius = window_radius(sigma, truncate)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    weights = weights / weights.sum()
    return weights.to(dtype=dtype, device=device)


def _symmetric_indices(length: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that extend ``range(length)`` by ``radius`` on both sides with mirror reflection (edge included)."""
    positions = torch.arange(-radius, length + radius, device=device)
    period = 2 * length
    positions = torch.remainder(positions, period)
    return torch.where(positions >= length, period - 1 - positions, positions)


def _filter_axis(tensor: torch.Tensor, weights: torch.Tensor, dim: int, padding: str) -> torch.Tensor:
    """Correlate ``tensor`` with the 1D ``weights`` along ``dim``.

    ``padding="symmetric"`` keeps the size (mirror extension, scipy ``reflect``); ``"valid"`` shrinks the axis
    by ``len(weights) - 1`` and uses only voxels inside the tensor.
    """
    taps = weights.numel()
    radius = (taps - 1) // 2
    if padding == "symmetric":
        length = tensor.shape[dim]
        tensor = torch.index_select(tensor, dim, _symmetric_indices(length, radius, tensor.device))
    elif padding != "valid":
        raise ValueError(f"padding must be 'symmetric' or 'valid', got {padding!r}")
    out_length = tensor.shape[dim] - taps + 1
    if out_length < 1:
        raise InputError(f"Axis {dim} of size {tensor.shape[dim]} is smaller than the {taps}-voxel SSIM window")
    result = tensor.narrow(dim, 0, out_length) * weights[0]
    for k in range(1, taps):
        result = result + tensor.narrow(dim, k, out_length) * weights[k]
    return result


def _scipy_allowed(tensor: torch.Tensor) -> bool:
    return (tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64)
            and not (torch.is_grad_enabled() and tensor.requires_grad))


def gaussian_filter(tensor: torch.Tensor, spatial_dims: int, sigma: float = SIGMA, truncate: float = TRUNCATE,
                    padding: str = "symmetric", backend: str = "auto") -> torch.Tensor:
    """Separable truncated Gaussian filter over the last ``spatial_dims`` axes of ``tensor``.

    ``backend="torch"`` uses shifted multiply-adds (differentiable, any device). ``"scipy"`` runs
    ``scipy.ndimage.correlate1d`` on the CPU (same arithmetic, several times faster there, no gradient).
    ``"auto"`` (default) picks scipy for CPU tensors that need no gradient and torch otherwise.
    """
    if backend not in ("auto", "torch", "scipy"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'scipy', got {backend!r}")
    if padding not in ("symmetric", "valid"):
        raise ValueError(f"padding must be 'symmetric' or 'valid', got {padding!r}")
    use_scipy = backend == "scipy" or (backend == "auto" and _scipy_allowed(tensor))
    if use_scipy:
        return _scipy_gaussian_filter(tensor, spatial_dims, sigma, truncate, padding)
    weights = gaussian_window(sigma, truncate, dtype=tensor.dtype, device=tensor.device)
    for dim in range(tensor.ndim - spatial_dims, tensor.ndim):
        tensor = _filter_axis(tensor, weights, dim, padding)
    return tensor


def _scipy_gaussian_filter(tensor: torch.Tensor, spatial_dims: int, sigma: float, truncate: float,
                           padding: str) -> torch.Tensor:
    from scipy import ndimage  # local import: scipy is only needed for this backend

    radius = window_radius(sigma, truncate)
    array = tensor.detach().cpu().numpy()
    weights = gaussian_window(sigma, truncate, dtype=torch.float64).numpy()
    first = array.ndim - spatial_dims
    if padding == "valid":
        for axis in range(first, array.ndim):
            if array.shape[axis] < 2 * radius + 1:
                raise InputError(f"Axis {axis} of size {array.shape[axis]} is smaller than the "
                                 f"{2 * radius + 1}-voxel SSIM window")
    for axis in range(first, array.ndim):
        array = ndimage.correlate1d(array, weights, axis=axis, mode="reflect")
    if padding == "valid":
        interior = (slice(None),) * first + (slice(radius, -radius),) * spatial_dims
        array = array[interior]
    return torch.from_numpy(np.ascontiguousarray(array)).to(tensor.device)


def _check_pair(x: torch.Tensor, y: torch.Tensor, spatial_dims: int | None) -> int:
    if x.shape != y.shape:
        raise ValueError(f"SSIM inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if spatial_dims is None:
        spatial_dims = x.ndim - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"SSIM needs 2 or 3 spatial axes; got spatial_dims={spatial_dims} for shape {tuple(x.shape)} "
                         "(expected (B, C, *spatial))")
    if x.ndim < spatial_dims:
        raise ValueError(f"Tensor of shape {tuple(x.shape)} has fewer than {spatial_dims} axes")
    if not torch.is_floating_point(x) or not torch.is_floating_point(y):
        raise TypeError("SSIM inputs must be floating point tensors")
    return spatial_dims


def _as_range(data_range: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """Turn a per-sample range of shape (B,) into something that broadcasts against ``like``."""
    if isinstance(data_range, torch.Tensor):
        data_range = data_range.to(dtype=like.dtype, device=like.device)
        if data_range.ndim == 1 and like.ndim > 1 and data_range.shape[0] == like.shape[0]:
            data_range = data_range.reshape(-1, *([1] * (like.ndim - 1)))
        return data_range
    return float(data_range)


def _ssim_from_moments(mu_x, mu_y, mu_xx, mu_yy, mu_xy, data_range, k1: float, k2: float) -> torch.Tensor:
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x2 = mu_x * mu_x
    mu_y2 = mu_y * mu_y
    mu_xy_prod = mu_x * mu_y
    var_x = mu_xx - mu_x2
    var_y = mu_yy - mu_y2
    cov_xy = mu_xy - mu_xy_prod
    numerator = (2 * mu_xy_prod + c1) * (2 * cov_xy + c2)
    denominator = (mu_x2 + mu_y2 + c1) * (var_x + var_y + c2)
    return numerator / denominator


def _ssim_impl(x: torch.Tensor, y: torch.Tensor, data_range, spatial_dims: int, padding: str, sigma: float,
               truncate: float, k1: float, k2: float, backend: str) -> torch.Tensor:
    stacked = torch.stack((x, y, x * x, y * y, x * y), dim=0)
    moments = gaussian_filter(stacked, spatial_dims, sigma, truncate, padding, backend)
    return _ssim_from_moments(*moments.unbind(0), data_range=_as_range(data_range, moments[0]), k1=k1, k2=k2)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float | torch.Tensor, spatial_dims: int | None = None,
             *, sigma: float = SIGMA, truncate: float = TRUNCATE, k1: float = K1, k2: float = K2,
             backend: str = "auto") -> torch.Tensor:
    """Voxel-wise SSIM map, same shape as ``x``: ``(B, C, *spatial)``, or any leading axes with ``spatial_dims`` given
    (e.g. a plain ``(z, y, x)`` volume with ``spatial_dims=3``).

    ``data_range`` is a number or a tensor broadcastable to the map (a 1D tensor of length B is taken per
    sample). ``spatial_dims`` (2 or 3) defaults to ``x.ndim - 2``. Border voxels use mirror extension
    (edge included), matching scikit-image's full SSIM image. ``backend``: see :func:`gaussian_filter`.
    """
    spatial_dims = _check_pair(x, y, spatial_dims)
    return _ssim_impl(x, y, data_range, spatial_dims, "symmetric", sigma, truncate, k1, k2, backend)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float | torch.Tensor, spatial_dims: int | None = None, *,
         mask: torch.Tensor | None = None, reduction: str = "mean", sigma: float = SIGMA, truncate: float = TRUNCATE,
         k1: float = K1, k2: float = K2, backend: str = "auto") -> torch.Tensor:
    """Mean SSIM of ``(B, C, *spatial)`` tensors; differentiable.

    Without ``mask`` the map is averaged over the interior (``radius`` = 5 voxels dropped at every border),
    identical to scikit-image's ``structural_similarity`` value. With ``mask`` (broadcastable to ``x``; bool
    or non-negative float weights) the full map (mirror-extended borders) is averaged inside the mask;
    samples with an empty mask give NaN.

    ``reduction``: ``"mean"`` (a scalar: the mean over batch and channels of the per-image values) or
    ``"none"`` (shape ``(B, C)``).
    """
    spatial_dims = _check_pair(x, y, spatial_dims)
    reduce_dims = tuple(range(x.ndim - spatial_dims, x.ndim))
    if mask is None:
        interior = _ssim_impl(x, y, data_range, spatial_dims, "valid", sigma, truncate, k1, k2, backend)
        values = interior.mean(dim=reduce_dims)
    else:
        full = _ssim_impl(x, y, data_range, spatial_dims, "symmetric", sigma, truncate, k1, k2, backend)
        weights = mask.to(dtype=full.dtype, device=full.device).expand_as(full)
        values = (full * weights).sum(dim=reduce_dims) / weights.sum(dim=reduce_dims)
    return _reduce(values, reduction)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float | torch.Tensor, spatial_dims: int | None = None, *,
         mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB per image of ``(B, C, *spatial)``; differentiable.

    The MSE is taken over the spatial axes (inside ``mask`` when given). Identical images give ``inf``
    (the evaluation pipeline caps that, see :mod:`synthunet.evaluation.metrics`).
    """
    if x.shape != y.shape:
        raise ValueError(f"PSNR inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if spatial_dims is None:
        spatial_dims = max(x.ndim - 2, 1)
    reduce_dims = tuple(range(x.ndim - spatial_dims, x.ndim))
    squared = (x - y) ** 2
    if mask is None:
        mse = squared.mean(dim=reduce_dims)
    else:
        weights = mask.to(dtype=squared.dtype, device=squared.device).expand_as(squared)
        mse = (squared * weights).sum(dim=reduce_dims) / weights.sum(dim=reduce_dims)
    if isinstance(data_range, torch.Tensor):
        data_range = data_range.to(dtype=mse.dtype, device=mse.device)
        if data_range.ndim == 1 and mse.ndim == 2 and data_range.shape[0] == mse.shape[0]:
            data_range = data_range[:, None]
        peak = data_range ** 2
    else:
        peak = float(data_range) ** 2
    values = 10.0 * torch.log10(peak / mse)
    return _reduce(values, reduction)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")

