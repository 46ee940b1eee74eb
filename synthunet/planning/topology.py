"""Target spacing, resampled shapes and the U-Net topology (pooling, kernels, divisibility).

The rules follow nnU-Net v2's experiment planner (re-implemented, see documentation/planning.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: an axis counts as coarse when its spacing exceeds this multiple of the others (nnU-Net: 3)
ANISOTROPY_THRESHOLD = 3.0
#: the smallest feature map edge of the bottleneck; an axis is pooled only while it stays >= this
MIN_FEATURE_MAP_SIZE = 4


def fullres_target_spacing(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]],
                           anisotropy_threshold: float = ANISOTROPY_THRESHOLD) -> list[float]:
    """Median spacing per axis; for a coarse axis with few voxels, its 10th percentile instead.

    The coarse axis (largest median spacing) is treated this way when its spacing is more than
    ``anisotropy_threshold`` times every other axis' spacing *and* it has fewer than
    1/``anisotropy_threshold`` as many voxels as the other axes (median shape after cropping). Using the
    10th percentile keeps more of the thick-slice information than the median would; it is never
    finer than the other axes.
    """
    spacings_arr = np.asarray(spacings, dtype=float)
    target = np.percentile(spacings_arr, 50, axis=0)
    median_shape = np.percentile(np.asarray(shapes, dtype=float), 50, axis=0)
    coarse = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != coarse]
    anisotropic_spacing = target[coarse] > anisotropy_threshold * max(target[i] for i in others)
    few_voxels = median_shape[coarse] * anisotropy_threshold < min(median_shape[i] for i in others)
    if anisotropic_spacing and few_voxels:
        p10 = float(np.percentile(spacings_arr[:, coarse], 10))
        finest_other = max(target[i] for i in others)
        target[coarse] = p10 if p10 >= finest_other else finest_other + 1e-5
    return [float(s) for s in target]


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> list[int]:
    """Array shape after resampling from ``spacing`` to ``target_spacing``."""
    return [max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing)]


def median_resampled_shape(shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]],
                           target_spacing: Sequence[float]) -> list[int]:
    """Median over cases of the shape each case has after resampling to ``target_spacing``."""
    new = [resampled_shape(sh, sp, target_spacing) for sh, sp in zip(shapes, spacings)]
    return [int(round(v)) for v in np.median(np.asarray(new, dtype=float), axis=0)]


@dataclass(frozen=True)
class Topology:
    """Strides and kernels per stage for a patch; ``patch_size`` is padded to be divisible."""

    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    pools_per_axis: list[int]
    patch_size: list[int]

    @property
    def n_stages(self) -> int:
        return len(self.strides)

    @property
    def divisor(self) -> list[int]:
        """The patch must be a multiple of this per axis (2 ** pools on that axis)."""
        return [2 ** p for p in self.pools_per_axis]


def _kernel_for(spacing: Sequence[float], previous: Sequence[int]) -> list[int]:
    """3 on axes within 2x of the finest spacing; an axis that had kernel 3 keeps it."""
    finest = min(spacing)
    return [3 if k == 3 or s / finest < 2 else 1 for s, k in zip(spacing, previous)]


def plan_topology(spacing: Sequence[float], patch_size: Sequence[int],
                  min_feature_map_size: int = MIN_FEATURE_MAP_SIZE, max_stages: int | None = None) -> Topology:
    """Pool axes until the feature map would fall below ``min_feature_map_size``.

    Per stage: an axis is pooled when its edge is >= 2 x ``min_feature_map_size`` and its current
    spacing is < 2 x the finest current spacing among the poolable axes; a lone poolable axis is pooled
    only when its edge is >= 3 x ``min_feature_map_size``. Kernel 3 on an axis whose current spacing is
    < 2 x the finest current spacing, else 1 (strongly anisotropic axes get 1 until pooling of the
    other axes has caught up); once 3, an axis keeps 3, and the bottleneck has 3 everywhere (nnU-Net).
    The patch is padded up to a multiple of 2 ** pools per axis.
    """
    dimension = len(spacing)
    current_spacing, current_size = [float(s) for s in spacing], [float(p) for p in patch_size]
    kernels, strides, pools = [], [[1] * dimension], [0] * dimension
    while max_stages is None or len(strides) < max_stages:
        valid = [i for i in range(dimension) if current_size[i] >= 2 * min_feature_map_size]
        if not valid:
            break
        finest_valid = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest_valid < 2]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        kernels.append(_kernel_for(current_spacing, kernels[-1] if kernels else [1] * dimension))
        stride = [1] * dimension
        for i in valid:
            stride[i], pools[i] = 2, pools[i] + 1
            current_spacing[i] *= 2
            current_size[i] = np.ceil(current_size[i] / 2)
        strides.append(stride)
    kernels.append([3] * dimension)  # bottleneck
    divisor = [2 ** p for p in pools]
    padded = [int(np.ceil(p / d) * d) for p, d in zip(patch_size, divisor)]
    return Topology(kernel_sizes=kernels, strides=strides, pools_per_axis=pools, patch_size=padded)


def features_per_stage(n_stages: int, base: int, max_features: int) -> list[int]:
    """``base * 2 ** stage``, capped at ``max_features``."""
    return [int(min(base * 2 ** stage, max_features)) for stage in range(n_stages)]


def initial_patch_size(spacing: Sequence[float], median_shape: Sequence[int], voxel_budget: int) -> list[int]:
    """The median shape, shrunk (keeping its aspect in mm) to at most ``voxel_budget`` voxels.

    The box is isotropic in millimetres (edge in voxels proportional to 1/spacing), like nnU-Net's
    starting patch, then clipped to the median shape per axis.
    """
    inverse = 1.0 / np.asarray(spacing, dtype=float)
    edge = inverse * (voxel_budget / np.prod(inverse)) ** (1.0 / len(spacing))
    return [int(max(1, min(round(e), m))) for e, m in zip(edge, median_shape)]
