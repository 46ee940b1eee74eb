"""Exact 45-degree reformatting of a volume in one plane, and back (see documentation/orientation_fusion.md).

The two axes of the rotation plane are zero-padded symmetrically to at least the in-plane diagonal
(an even amount per axis, so the array centre does not move), the padded volume is rotated about its
exact centre ``(P - 1) / 2`` onto the same padded grid with ``scipy.ndimage.affine_transform``, and the
inverse rotation uses the same grid and centre before cropping the padding away. Forward and back
therefore compose to the identity up to interpolation error: no half-voxel shift, nothing cut off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ROTATION_DEGREES = 45.0


@dataclass(frozen=True)
class PlaneRotation:
    """Rotation by ``degrees`` in the plane of array axes ``plane = (p, q)`` of a volume of ``shape``."""

    shape: tuple[int, int, int]
    plane: tuple[int, int]
    degrees: float = ROTATION_DEGREES

    @property
    def padding(self) -> tuple[tuple[int, int], ...]:
        """(before, after) zero padding per axis: equal halves, only on the two plane axes."""
        p, q = self.plane
        diagonal = math.ceil(math.hypot(self.shape[p], self.shape[q]) - 1e-9)
        pads = [(0, 0)] * 3
        for axis in (p, q):
            total = max(diagonal - self.shape[axis], 0)
            total += total % 2
            pads[axis] = (total // 2, total // 2)
        return tuple(pads)

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return tuple(n + a + b for n, (a, b) in zip(self.shape, self.padding))

    @property
    def crop(self) -> tuple[slice, slice, slice]:
        """Slices that cut the original volume out of the padded grid."""
        return tuple(slice(a, a + n) for n, (a, _) in zip(self.shape, self.padding))

    def _matrix_and_offset(self, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
        """2D ``(matrix, offset)`` for affine_transform on a ``(p, q)`` slice: input = M @ output + offset."""
        angle = math.radians(-self.degrees if inverse else self.degrees)
        c, s = math.cos(angle), math.sin(angle)
        # output voxel o samples the input at R(-angle) (o - centre) + centre: the content turns by +angle
        matrix = np.array([[c, s], [-s, c]])
        p, q = self.plane
        padded = self.padded_shape
        centre = np.array([(padded[p] - 1) / 2.0, (padded[q] - 1) / 2.0])
        return matrix, centre - matrix @ centre

    def _transform(self, volume: np.ndarray, inverse: bool, order: int) -> np.ndarray:
        p, q = self.plane
        r = 3 - p - q
        matrix, offset = self._matrix_and_offset(inverse)
        moved = np.moveaxis(volume, (r, p, q), (0, 1, 2))
        out = np.empty(moved.shape, dtype=np.float32)
        for index in range(moved.shape[0]):
            ndimage.affine_transform(moved[index].astype(np.float64, copy=False), matrix, offset, output=out[index],
                                     order=order, mode="constant", cval=0.0, prefilter=order > 1)
        return np.moveaxis(out, (0, 1, 2), (r, p, q))

    def forward(self, volume: np.ndarray, order: int = 3) -> np.ndarray:
        """Original-grid ``volume`` -> padded, rotated grid (float32)."""
        if tuple(volume.shape) != tuple(self.shape):
            raise ValueError(f"volume shape {volume.shape} does not match the rotation's shape {self.shape}")
        return self._transform(np.pad(volume, self.padding), inverse=False, order=order)

    def backward(self, rotated: np.ndarray, order: int = 3) -> np.ndarray:
        """Padded, rotated grid -> original grid (rotate back, crop the padding; float32)."""
        if tuple(rotated.shape) != tuple(self.padded_shape):
            raise ValueError(f"rotated shape {rotated.shape} does not match the padded grid {self.padded_shape}")
        return np.ascontiguousarray(self._transform(rotated, inverse=True, order=order)[self.crop])

    def support(self) -> np.ndarray:
        """Voxels of the rotated grid whose linear interpolation lies wholly inside the original volume."""
        return self.forward(np.ones(self.shape, dtype=np.float32), order=1) >= 1.0 - 1e-3

    def coverage(self, valid_rotated: np.ndarray) -> np.ndarray:
        """Original-grid voxels whose back-rotation draws only on ``valid_rotated`` voxels (boolean)."""
        eroded = ndimage.binary_erosion(valid_rotated, structure=_plane_structure(self.plane), border_value=0)
        return self.backward(eroded.astype(np.float32), order=1) >= 1.0 - 1e-3


def _plane_structure(plane: tuple[int, int]) -> np.ndarray:
    """3x3 in-plane cross (no extent along the third axis) for eroding by one voxel in the rotation plane."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    index = [1, 1, 1]
    structure[tuple(index)] = True
    for axis in plane:
        for delta in (0, 2):
            index = [1, 1, 1]
            index[axis] = delta
            structure[tuple(index)] = True
    return structure
