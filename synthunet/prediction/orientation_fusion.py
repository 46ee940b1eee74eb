"""Multi-orientation fusion for 2.5D networks (BraSyn 2023 winner, after Baltruschat et al. 2021).

Nine slicing planes: the three principal axes and the six face diagonals. A face diagonal comes from
rotating the volume by 45 degrees in the plane of two axes ``(p, q)`` and slicing the rotated volume
along ``p`` or ``q``; the same rotated volume serves both, so 9 orientations need only 3 resamplings.
Each orientation's prediction is rotated back, cropped to the original grid and averaged with a
per-voxel coverage count. Geometry: documentation/orientation_fusion.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from synthunet.prediction.ensembling import VoxelStatistics
from synthunet.prediction.rotation import PlaneRotation
from synthunet.prediction.slicewise import predict_along_axis
from synthunet.preprocessing.cropping import bounding_box

#: extra voxels kept around the rotated volume's support before predicting (spline tails, slice stacks)
ROTATED_CROP_MARGIN = 8


@dataclass(frozen=True)
class Orientation:
    """Slice along ``slicing_axis`` of the volume, first rotated by 45 degrees in ``rotation_plane`` (if any)."""

    slicing_axis: int
    rotation_plane: tuple[int, int] | None = None

    def normal(self) -> np.ndarray:
        """Unit normal of the slicing planes in the original volume's index space (z, y, x)."""
        normal = np.zeros(3)
        normal[self.slicing_axis] = 1.0
        if self.rotation_plane is None:
            return normal
        p, q = self.rotation_plane
        other = q if self.slicing_axis == p else p
        # slicing the rotated grid along p (q) samples the original along e_p - e_q (e_p + e_q), up to sign
        normal[other] = -1.0 if self.slicing_axis == p else 1.0
        return normal / np.linalg.norm(normal)

    def __str__(self) -> str:
        if self.rotation_plane is None:
            return f"axis {self.slicing_axis}"
        return f"axis {self.slicing_axis} after 45 deg in plane {self.rotation_plane}"


PRINCIPAL_ORIENTATIONS = [Orientation(0), Orientation(1), Orientation(2)]
DIAGONAL_ORIENTATIONS = [Orientation(axis, plane) for plane in ((0, 1), (0, 2), (1, 2)) for axis in plane]


def orientations_for(count: int, axial_axis: int = 0) -> list[Orientation]:
    """1: slices along ``axial_axis`` only; 3: the three principal axes; 9: principal axes + face diagonals."""
    if count == 1:
        return [Orientation(axial_axis)]
    if count == 3:
        return list(PRINCIPAL_ORIENTATIONS)
    if count == 9:
        return PRINCIPAL_ORIENTATIONS + DIAGONAL_ORIENTATIONS
    raise ValueError(f"orientations must be 1, 3 or 9, got {count}")


SlicePredictor = Callable[[torch.Tensor, int], "list[torch.Tensor]"]
"""(data (C, z, y, x), slicing axis) -> one prediction (C_out, z, y, x) per fold; the network part of fusion."""


def fuse_orientations(predict: SlicePredictor, data: np.ndarray | torch.Tensor,
                      orientations: Sequence[Orientation], statistics: VoxelStatistics | None = None,
                      interpolation_order: int = 3) -> np.ndarray:
    """Predict ``data`` (C, z, y, x) in every orientation (all folds at once) and average in the original grid.

    Each rotated input is computed once and shared by the folds. Returns the fused ``(C_out, z, y, x)``
    float32 prediction; every (fold, orientation) result is also added to ``statistics`` (with its
    coverage mask) when given, for the uncertainty.
    """
    data = torch.as_tensor(data).float()
    shape = tuple(data.shape[1:])
    local: VoxelStatistics | None = None

    def add(prediction: np.ndarray, coverage: np.ndarray | None) -> None:
        nonlocal local
        local = local or VoxelStatistics(prediction.shape)
        local.add(prediction, coverage)
        if statistics is not None:
            statistics.add(prediction, coverage)

    by_plane: dict[tuple[int, int] | None, list[int]] = {}
    for orientation in orientations:
        by_plane.setdefault(orientation.rotation_plane, []).append(orientation.slicing_axis)
    for plane, axes in by_plane.items():
        if plane is None:
            for axis in axes:
                for prediction in predict(data, axis):
                    add(prediction.numpy(), None)
            continue
        rotation = PlaneRotation(shape, plane)
        valid = rotation.support()
        box = bounding_box(valid, ROTATED_CROP_MARGIN)
        rotated = torch.from_numpy(np.stack([rotation.forward(channel.numpy(), order=interpolation_order)[box]
                                             for channel in data]))
        coverage = rotation.coverage(valid)
        for axis in axes:
            for rotated_prediction in predict(rotated, axis):
                full = np.zeros((rotated_prediction.shape[0],) + rotation.padded_shape, dtype=np.float32)
                full[(slice(None),) + box] = rotated_prediction.numpy()
                add(np.stack([rotation.backward(channel, order=interpolation_order) for channel in full]), coverage)
    if local is None:
        raise ValueError("no orientations given")
    return local.mean()


def predict_volume_25d(network: nn.Module | Callable | Sequence[nn.Module], data: np.ndarray | torch.Tensor,
                       num_slices: int, patch_size: Sequence[int], orientations: int | Sequence[Orientation] = 9,
                       step_size: float = 0.5, use_mirroring: bool = True, batch_size: int | None = None,
                       device: torch.device | str | None = None, use_amp: bool = True,
                       statistics: VoxelStatistics | None = None, axial_axis: int = 0,
                       progress: Callable[[int], None] | None = None,
                       tile_divisor: Sequence[int] | None = None) -> np.ndarray:
    """2.5D prediction of a ``(C, z, y, x)`` volume fused over 1, 3 or 9 orientations; ``(C_out, z, y, x)`` float32.

    ``network`` may be a list (fold ensemble): all are averaged, sharing rotated inputs and slice
    stacks. Pure function (no files): training calls it for its end-of-training validation.
    ``tile_divisor``: whole slices in one window (see :func:`predict_along_axis`).
    """
    if isinstance(orientations, int):
        orientations = orientations_for(orientations, axial_axis)
    networks = list(network) if isinstance(network, (list, tuple, nn.ModuleList)) else [network]

    def predict(volume: torch.Tensor, axis: int) -> list[torch.Tensor]:
        return predict_along_axis(networks, volume, axis, num_slices, patch_size, step_size, use_mirroring,
                                  batch_size, device, use_amp, progress, tile_divisor)

    return fuse_orientations(predict, data, orientations, statistics)
