"""Structure-aware losses: 1 - SSIM (seeds 000, 001) and the image gradient difference loss (seed 002)."""
from __future__ import annotations

import torch

from synthunet.evaluation.ssim import ssim

#: data range of the normalised intensities (Nyúl scale / 100: the bulk of every channel lies in [0, 1])
DATA_RANGE = 1.0


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """``1 - SSIM`` with the evaluation package's Gaussian 11-voxel window, in 2D or 3D as the patch is.

    The patch must be at least 11 voxels along every spatial axis. Computed in float32.
    """
    return 1.0 - ssim(prediction.float(), target.float(), data_range=data_range)


def gradient_difference_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Seed 002's GDL: ``sum_axes mean((|grad_a Y| - |grad_a G(X)|)^2)`` with forward differences along every
    spatial axis (3 axes for 3D patches, 2 for 2D slices)."""
    total = prediction.new_zeros(())
    for dim in range(2, prediction.ndim):
        grad_p = torch.diff(prediction, dim=dim).abs()
        grad_t = torch.diff(target, dim=dim).abs()
        total = total + ((grad_t - grad_p) ** 2).mean()
    return total
