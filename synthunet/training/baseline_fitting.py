"""Closed-form fitting of the baselines on voxels sampled from the training cases of a fold."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from synthunet.architectures.baselines import IdentityScale, QuantileMapping, VoxelRegression
from synthunet.errors import InputError

Case = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs (C, *spatial), target (*spatial), brain mask (*spatial)


def _sample(mask: np.ndarray, max_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of at most ``max_voxels`` voxels inside ``mask`` (all of them when fewer)."""
    indices = np.flatnonzero(mask)
    if indices.size > max_voxels:
        indices = rng.choice(indices, max_voxels, replace=False)
    return indices


def fit_identity(cases: Iterable[Case], in_channels: int, max_voxels_per_case: int = 50_000,
                 seed: int = 0) -> IdentityScale:
    """Pick the input most correlated with the target inside the brain; fit ``target ~ a * input + b``.

    Correlation and the least-squares line are computed over brain voxels pooled from all cases (the
    target of a case to be predicted is missing, so its own scale cannot be used).
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for inputs, target, brain in cases:
        index = _sample(brain, max_voxels_per_case, rng)
        xs.append(inputs.reshape(inputs.shape[0], -1)[:, index].astype(np.float64))
        ys.append(target.reshape(-1)[index].astype(np.float64))
    if not xs:
        raise InputError("No training case to fit the identity baseline on")
    x, y = np.concatenate(xs, axis=1), np.concatenate(ys)
    correlations = [abs(np.corrcoef(channel, y)[0, 1]) if channel.std() > 0 else 0.0 for channel in x]
    best = int(np.argmax(correlations))
    scale, offset = np.polyfit(x[best], y, 1)
    model = IdentityScale(dimension=inputs.ndim - 1, in_channels=in_channels)
    model.channel.fill_(best)
    model.scale.fill_(float(scale))
    model.offset.fill_(float(offset))
    return model


@torch.no_grad()
def fit_voxel_regression(model: VoxelRegression, cases: Iterable[Case], max_voxels_per_case: int = 20_000,
                         ridge: float = 1e-3, seed: int = 0) -> VoxelRegression:
    """Fit ``model``'s standardisation and polynomial coefficients by ridge least squares (in place).

    Features are computed on whole volumes (so local means see their full neighbourhood), then brain
    voxels are sampled per case. ``ridge`` is relative to the mean diagonal of the normal matrix.
    """
    rng = np.random.default_rng(seed)
    model.feature_mean.zero_()
    model.feature_std.fill_(1.0)
    features, targets = [], []
    for inputs, target, brain in cases:
        volume = model.features(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None])[0]
        index = torch.from_numpy(_sample(brain, max_voxels_per_case, rng))
        features.append(volume.reshape(volume.shape[0], -1)[:, index].double())
        targets.append(torch.from_numpy(target.reshape(-1)[index.numpy()].astype(np.float64)))
    if not features:
        raise InputError("No training case to fit the regression baseline on")
    x, y = torch.cat(features, dim=1), torch.cat(targets)
    mean, std = x.mean(dim=1), x.std(dim=1).clamp_min(1e-6)
    model.feature_mean.copy_(mean.float())
    model.feature_std.copy_(std.float())
    design = model.design(((x - mean[:, None]) / std[:, None])[None])[0].T  # (N, T)
    normal = design.T @ design
    normal += torch.eye(normal.shape[0], dtype=normal.dtype) * ridge * normal.diagonal().mean()
    coefficients = torch.linalg.solve(normal, design.T @ y)
    model.coefficients.copy_(coefficients.float())
    return model


#: the quantiles (percent) of the quantile-mapping baseline: 0.5 % to 99.5 %, the metric's own range
QUANTILE_RANGE = (0.5, 99.5)


def mean_quantile_levels(images: Iterable[tuple[np.ndarray, np.ndarray]], num_levels: int) -> np.ndarray:
    """Mean over ``(image, brain mask)`` pairs of the brain's intensity quantiles, strictly increasing."""
    percents = np.linspace(*QUANTILE_RANGE, num_levels)
    levels = [np.percentile(np.asarray(image, dtype=np.float64)[np.asarray(brain, dtype=bool)], percents)
              for image, brain in images if np.any(brain)]
    if not levels:
        raise InputError("No case with a non-empty brain to learn quantile levels from")
    mean = np.maximum.accumulate(np.mean(levels, axis=0))
    return mean + np.arange(num_levels) * 1e-6 * max(float(np.ptp(mean)), 1e-6)  # ties would divide by zero


def fit_quantile_mapping(sources: Iterable[tuple[np.ndarray, np.ndarray]],
                         targets: Iterable[tuple[np.ndarray, np.ndarray]], in_channels: int, channel: int = 0,
                         num_levels: int = 101) -> QuantileMapping:
    """Histogram matching learned from unpaired cases: the mean quantile levels of the source channel over
    ``sources`` and of the target over ``targets`` (``(image, brain mask)`` pairs; the two may, and in the
    unpaired baseline do, come from different cases)."""
    model = QuantileMapping(3, in_channels, channel=channel, num_levels=num_levels)
    model.source_levels.copy_(torch.from_numpy(mean_quantile_levels(sources, num_levels)).float())
    model.target_levels.copy_(torch.from_numpy(mean_quantile_levels(targets, num_levels)).float())
    return model
