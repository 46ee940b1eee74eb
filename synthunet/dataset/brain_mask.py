"""The brain as a boolean array: ``masksTr/{case}`` where it exists; otherwise the union over channels of
the non-zero voxels with holes filled, per 2D slice along each axis and then in 3D (documentation/architecture.md).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_fill_holes


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
