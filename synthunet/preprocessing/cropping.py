"""Cropping to the brain's bounding box (the brain: :mod:`synthunet.dataset.brain_mask`).

Bounding boxes are half-open ``[[z0, z1], [y0, y1], [x0, x1]]`` as in acvl-utils / nnU-Net v2.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask

from synthunet.errors import InputError


def brain_bbox(mask: np.ndarray) -> list[list[int]]:
    """Half-open bounding box of a non-empty mask (acvl-utils)."""
    if not mask.any():
        raise InputError("The brain mask is empty: every voxel of every channel is zero (or the mask file is empty)")
    return [[int(a), int(b)] for a, b in get_bbox_from_mask(mask)]


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
