"""Voxel-wise losses: L1, L2, tumour/healthy-weighted L1 (seed 000) and the local loss (seed 001)."""
from __future__ import annotations

import torch


def l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every voxel of the patch (seed 000 eq. 1)."""
    return (prediction - target).abs().mean()


def l2_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every voxel of the patch (seed 002's Euclidean loss, as a mean)."""
    return ((prediction - target) ** 2).mean()


def tumour_weighted_l1(prediction: torch.Tensor, target: torch.Tensor, tumour: torch.Tensor,
                       weight: float = 0.5) -> torch.Tensor:
    """``w * L1_t + (1 - w) * L1_h`` (seed 000 eq. 2-4).

    ``L1_t`` is the mean absolute error over tumour voxels, ``L1_h`` over all other voxels (``M_h = 1 - M_t``),
    both pooled over the batch. A batch without tumour voxels gives ``L1_h`` alone (the weight of an empty
    region is moved to the other one, instead of dividing by zero).
    """
    error = (prediction - target).abs()
    tumour = tumour.to(error.dtype).expand_as(error)
    healthy = 1.0 - tumour
    n_t, n_h = tumour.sum(), healthy.sum()
    if n_t == 0:
        return (error * healthy).sum() / n_h
    if n_h == 0:
        return (error * tumour).sum() / n_t
    return weight * (error * tumour).sum() / n_t + (1.0 - weight) * (error * healthy).sum() / n_h


def enhancement_mask(target: torch.Tensor, reference: torch.Tensor, delta: float = 0.1) -> torch.Tensor:
    """Seed 001's rough tumour/vessel mask ``M = [Y - X_T1 > delta]`` (float 0/1, same shape as ``target``)."""
    return ((target - reference) > delta).to(target.dtype)


def local_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``||(f(X) - Y) * M||_1`` normalised like the MAE (divided by the number of voxels, not by ``|M|``),
    so the weights lambda_1 and lambda_3 of seed 001 compare the same kind of quantity."""
    return ((prediction - target).abs() * mask).mean()
