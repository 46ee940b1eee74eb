"""Brain mask and cropping to the brain's bounding box.

The brain is ``masksTr/{case}`` where it exists; otherwise the union over channels of the non-zero
voxels with holes filled, per 2D slice along each axis and then in 3D (documentation/architecture.md).
Bounding boxes are half-open ``[[z0, z1], [y0, y1], [x0, x1]]`` as in acvl-utils / nnU-Net v2.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask
from scipy.ndimage import binary_fill_holes

from synthunet.errors import InputError


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every 2D slice along each axis, then in 3D."""
    filled = np.asarray(mask, dtype=bool)
    if filled.ndim == 3:
        for axis in range(3):
            # a structure without neighbours along `axis` makes scipy fill each slice on its own
            structure = np.zeros((3, 3, 3), dtype=bool)
            index = [slice(None)] * 3
            index[axis] = 1
            structure[tuple(index)] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
            filled = binary_fill_holes(filled, structure=structure)
    return binary_fill_holes(filled)


def nonzero_brain_mask(images: Sequence[np.ndarray]) -> np.ndarray:
    """Union over channels of the non-zero voxels, holes filled."""
    if len(images) == 0:
        raise ValueError("At least one image is needed to compute a brain mask")
    union = np.zeros(images[0].shape, dtype=bool)
    for image in images:
        union |= image != 0
    return fill_holes(union)


def brain_mask(images: Sequence[np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
    """The brain as a boolean array: ``mask > 0`` when a mask is given, else :func:`nonzero_brain_mask`."""
    if mask is not None:
        return np.asarray(mask) > 0
    return nonzero_brain_mask(images)


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
