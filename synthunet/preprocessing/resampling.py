"""Resampling images and segmentations to a target spacing (skimage.transform.resize).

Images use spline order ``order_data`` (3 by default). When the source or the target spacing is
anisotropic (largest / smallest spacing > ``separate_z_anisotropy_threshold``) and one axis has the
largest spacing, that axis is resampled separately, as in nnU-Net: first in-plane with ``order``,
then along the coarse axis with ``order_z`` (0 = nearest by default, 1 = linear).
Segmentations with order 0 use nearest neighbour; with order > 0 every label value is resampled as a
one-hot map and the most likely value is taken.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.transform import resize

from synthunet.plans import ResamplingPlan

DEFAULT_RESAMPLING = ResamplingPlan().to_dict()


def compute_new_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """Shape covering the same extent at ``new_spacing`` (rounded, at least 1 voxel per axis)."""
    if len(shape) != len(spacing) or len(shape) != len(new_spacing):
        raise ValueError(f"shape {tuple(shape)}, spacing {tuple(spacing)} and target spacing {tuple(new_spacing)} "
                         f"must have the same length")
    return tuple(max(1, int(round(s * sp / nsp))) for s, sp, nsp in zip(shape, spacing, new_spacing))


def _single_coarse_axis(spacing: Sequence[float], threshold: float) -> int | None:
    spacing = np.asarray(spacing, dtype=float)
    if spacing.max() / spacing.min() <= threshold:
        return None
    coarse = np.flatnonzero(np.isclose(spacing, spacing.max()))
    return int(coarse[0]) if coarse.size == 1 else None


def separate_z_axis(spacing: Sequence[float], new_spacing: Sequence[float], threshold: float) -> int | None:
    """The axis to resample on its own (source anisotropy first, then target), or None."""
    axis = _single_coarse_axis(spacing, threshold)
    return axis if axis is not None else _single_coarse_axis(new_spacing, threshold)


def _resize(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    if tuple(volume.shape) == tuple(shape):
        return volume
    return resize(volume, tuple(shape), order=order, mode="edge", anti_aliasing=False, preserve_range=True)


def _resize_separate(volume: np.ndarray, shape: Sequence[int], order: int, order_z: int, axis: int | None) -> np.ndarray:
    if axis is None:
        return _resize(volume, shape, order)
    in_plane = list(shape)
    in_plane[axis] = volume.shape[axis]
    return _resize(_resize(volume, in_plane, order), shape, order_z)


def resample_data(data: np.ndarray, spacing: Sequence[float], new_spacing: Sequence[float],
                  new_shape: Sequence[int] | None = None, order: int = 3, order_z: int = 0,
                  anisotropy_threshold: float = 3.0) -> np.ndarray:
    """Resample every channel of ``data`` (C, z, y, x) to ``new_spacing`` (or ``new_shape``); float32."""
    new_shape = tuple(new_shape) if new_shape is not None else compute_new_shape(data.shape[1:], spacing, new_spacing)
    axis = separate_z_axis(spacing, new_spacing, anisotropy_threshold)
    output = np.empty((data.shape[0],) + new_shape, dtype=np.float32)
    for channel in range(data.shape[0]):
        output[channel] = _resize_separate(data[channel].astype(np.float32, copy=False), new_shape, order, order_z, axis)
    return output


def resample_seg(seg: np.ndarray, spacing: Sequence[float], new_spacing: Sequence[float],
                 new_shape: Sequence[int] | None = None, order: int = 0, order_z: int = 0,
                 anisotropy_threshold: float = 3.0) -> np.ndarray:
    """Resample an integer map (C, z, y, x) to ``new_spacing`` (or ``new_shape``); keeps the dtype."""
    new_shape = tuple(new_shape) if new_shape is not None else compute_new_shape(seg.shape[1:], spacing, new_spacing)
    axis = separate_z_axis(spacing, new_spacing, anisotropy_threshold)
    output = np.empty((seg.shape[0],) + new_shape, dtype=seg.dtype)
    for channel in range(seg.shape[0]):
        volume = seg[channel]
        if tuple(volume.shape) == new_shape:
            output[channel] = volume
        elif order == 0 and order_z == 0:
            output[channel] = _resize(volume, new_shape, 0).astype(seg.dtype)
        else:
            values = np.unique(volume)
            scores = np.stack([_resize_separate((volume == v).astype(np.float32), new_shape, order, order_z, axis)
                               for v in values])
            output[channel] = values[np.argmax(scores, axis=0)].astype(seg.dtype)
    return output
