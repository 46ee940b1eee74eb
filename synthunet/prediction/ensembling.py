"""Per-voxel mean and standard deviation over predictions (folds, orientations), with coverage masks."""
from __future__ import annotations

import numpy as np
import torch


class VoxelStatistics:
    """Running per-voxel sum, sum of squares and count (float64) of ``(C, *spatial)`` predictions.

    Each :meth:`add` is one sample (a fold, or a fold in one orientation); a boolean ``mask`` limits it
    to the voxels that sample covers, so uncovered voxels are not diluted.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.total = np.zeros(self.shape, dtype=np.float64)
        self.total_sq = np.zeros(self.shape, dtype=np.float64)
        self.count = np.zeros(self.shape[1:], dtype=np.int32)
        self.samples = 0

    def add(self, prediction: np.ndarray | torch.Tensor, mask: np.ndarray | None = None) -> None:
        """Add one prediction ``(C, *spatial)``; ``mask`` ``(*spatial)`` marks the voxels it covers."""
        if isinstance(prediction, torch.Tensor):
            prediction = prediction.detach().cpu().numpy()
        prediction = np.asarray(prediction, dtype=np.float64)
        if prediction.shape != self.shape:
            raise ValueError(f"prediction shape {prediction.shape} does not match {self.shape}")
        if mask is None:
            self.total += prediction
            self.total_sq += prediction * prediction
            self.count += 1
        else:
            mask = np.asarray(mask, dtype=bool)
            self.total += np.where(mask, prediction, 0.0)
            self.total_sq += np.where(mask, prediction * prediction, 0.0)
            self.count += mask
        self.samples += 1

    def mean(self) -> np.ndarray:
        """Per-voxel mean over the samples covering each voxel (0 where none does), float32."""
        count = np.maximum(self.count, 1)
        return (self.total / count).astype(np.float32)

    def std(self) -> np.ndarray:
        """Per-voxel population standard deviation (ddof 0) over the covering samples, float32."""
        count = np.maximum(self.count, 1)
        mean = self.total / count
        variance = np.maximum(self.total_sq / count - mean * mean, 0.0)
        return np.sqrt(variance).astype(np.float32)
