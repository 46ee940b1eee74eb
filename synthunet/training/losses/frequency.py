"""Frequency loss (seed 000 eq. 8): L1 between FFT magnitudes, split into low and high frequencies."""
from __future__ import annotations

import torch

DEFAULT_RADIUS = 21


def low_frequency_mask(shape: tuple[int, ...], radius: float, device=None) -> torch.Tensor:
    """Boolean mask of the (fft-shifted) spectrum: True within ``radius`` frequency bins of the origin.

    Circular for 2D, spherical for 3D (the distance is measured in bins along every spatial axis).
    """
    grids = torch.meshgrid(*[torch.arange(n, device=device, dtype=torch.float32) - n // 2 for n in shape],
                           indexing="ij")
    distance2 = sum(g ** 2 for g in grids)
    return distance2 <= float(radius) ** 2


def frequency_loss(prediction: torch.Tensor, target: torch.Tensor, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """``mean_low | |F(y)| - |F(G(x))| | + mean_high | |F(y)| - |F(G(x))| |``.

    ``F`` is the orthonormal FFT over all spatial axes of each patch (2D slices or 3D patches), shifted so
    that the origin is in the centre. Each term is the mean over its own region of the spectrum (low: the
    disc/ball of ``radius`` bins; high: the rest), so low and high frequencies get equal weight whatever
    their bin count. A region that is empty (patch too small) contributes 0. Computed in float32.
    """
    spatial = tuple(range(2, prediction.ndim))
    f_pred = torch.fft.fftshift(torch.fft.fftn(prediction.float(), dim=spatial, norm="ortho"), dim=spatial).abs()
    f_true = torch.fft.fftshift(torch.fft.fftn(target.float(), dim=spatial, norm="ortho"), dim=spatial).abs()
    difference = (f_true - f_pred).abs()
    low = low_frequency_mask(tuple(prediction.shape[2:]), radius, prediction.device).expand_as(difference)
    total = difference.new_zeros(())
    for region in (low, ~low):
        count = region.sum()
        if count > 0:
            total = total + difference[region].sum() / count
    return total
