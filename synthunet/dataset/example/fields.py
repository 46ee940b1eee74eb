"""Smooth random fields (zero mean, unit standard deviation) for deformations, shapes and bias fields."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def smooth_random_field(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float] | float,
                        correlation_mm: float) -> np.ndarray:
    """A smooth random field of ``shape`` with unit standard deviation and features ~``correlation_mm`` wide.

    Independent normal values on a control grid every ``correlation_mm`` are interpolated with cubic
    B-splines (scipy.ndimage.zoom) onto a grid four times finer, then linearly onto the voxel grid,
    and standardised.
    """
    shape = tuple(int(n) for n in shape)
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (len(shape),))
    extent = np.asarray(shape) * spacing
    control = np.maximum(np.ceil(extent / correlation_mm).astype(int) + 1, 2)
    coarse = rng.standard_normal(tuple(control))
    # Cubic splines onto an intermediate grid (~correlation/4), then linear onto the voxels: smooth and cheap.
    intermediate = np.minimum(np.maximum(np.ceil(extent / (correlation_mm / 4.0)).astype(int), control), shape)
    field = ndimage.zoom(coarse, intermediate / control, order=3, mode="reflect", grid_mode=True)
    field = fit_shape(field, tuple(intermediate))
    if tuple(intermediate) != shape:
        field = fit_shape(ndimage.zoom(field, np.asarray(shape) / intermediate, order=1, mode="nearest",
                                        grid_mode=True), shape)
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def fit_shape(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or edge-pad ``array`` to ``shape`` (zoom may be off by one voxel through rounding)."""
    array = array[tuple(slice(0, n) for n in shape)]
    pad = [(0, n - m) for n, m in zip(shape, array.shape)]
    return np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array
