"""Cropping to the brain's bounding box (the brain: :mod:`synthunet.dataset.brain_mask`).

Bounding boxes are half-open ``[[z0, z1], [y0, y1], [x0, x1]]`` as in acvl-utils / nnU-Net v2.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice

from synthunet.errors import InputError


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The smallest box holding every True voxel of ``mask`` (any dimension), grown by ``margin`` voxels and
    clipped to the array; empty slices when ``mask`` is all False."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if present.size == 0:
            return (slice(0, 0),) * mask.ndim
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def brain_bbox(mask: np.ndarray) -> list[list[int]]:
    """Half-open bounding box ``[[start, stop], ...]`` of a non-empty mask."""
    if not mask.any():
        raise InputError("The brain mask is empty: every voxel of every channel is zero (or the mask file is empty)")
    return [[box.start, box.stop] for box in bounding_box(mask)]


def crop(array: np.ndarray, bbox: Sequence[Sequence[int]]) -> np.ndarray:
    """Crop the last ``len(bbox)`` axes of ``array`` to ``bbox``."""
    slicer = (slice(None),) * (array.ndim - len(bbox)) + bounding_box_to_slice([list(b) for b in bbox])
    return array[slicer]


def paste(cropped: np.ndarray, bbox: Sequence[Sequence[int]], shape: Sequence[int], fill_value: float = 0) -> np.ndarray:
    """Inverse of :func:`crop`: put ``cropped`` back into an array of ``shape`` filled with ``fill_value``."""
    full_shape = tuple(cropped.shape[: cropped.ndim - len(bbox)]) + tuple(int(s) for s in shape)
    output = np.full(full_shape, fill_value, dtype=cropped.dtype)
    slicer = (slice(None),) * (cropped.ndim - len(bbox)) + bounding_box_to_slice([list(b) for b in bbox])
    output[slicer] = cropped
    return output
