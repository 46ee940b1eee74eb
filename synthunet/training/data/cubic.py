"""Cubic B-spline resampling in torch, on any device: what ``scipy.ndimage.map_coordinates(order=3)`` does.

Trilinear interpolation lowers small bright structures: on tumour-centred 32³ patches of the example
dataset rotated by up to 15°, the enhancing tumour's mean came out 3.5 % and the brain's 99.5th percentile
4 % below cubic interpolation's. Trained on such targets the U-Net under-shoots the enhancement, and the
region-mode metric, which normalises by that percentile, turns this into a loss over the whole brain
(documentation/training.md). So images are resampled with cubic B-splines, as batchgenerators did:

1. **prefilter**: the B-spline coefficients of the samples, the inverse filter of ``[1, 4, 1] / 6`` run as
   its causal and anti-causal first-order recursions (pole ``z = sqrt(3) - 2``) along every axis, for a
   signal that is zero beyond the region (the caller reads :data:`CUBIC_MARGIN` more voxels on every side,
   and the recursion's memory decays as ``|z|^k``: 4e-4 after 6 voxels);
2. **evaluation**: per axis the four B-spline weights ``w0..w3`` are folded into two linear fetches
   (``g0 = w0 + w1`` at ``i - 1 + w1 / g0``, ``g1 = w2 + w3`` at ``i + 1 + w3 / g1``), so a value is the
   weighted sum of 2^n trilinear ``grid_sample`` fetches of the coefficients (all weights are positive).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: pole of the cubic B-spline's inverse filter
POLE = math.sqrt(3.0) - 2.0
#: voxels read beyond the sampled positions on every side, so the prefilter's zero extension stays away from them
CUBIC_MARGIN = 6


def bspline_coefficients(x: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline coefficients of ``x`` (B, C, *S) along every spatial axis, for a signal that is zero
    beyond the edge (the recursions are a loop over each axis' length, each step one vectorised operation:
    on a CPU 10x faster than the same filter as a convolution)."""
    for axis in range(2, x.ndim):
        y = x.movedim(axis, 0).clone()
        length = y.shape[0]
        for k in range(1, length):  # causal: y[k] = x[k] + z y[k - 1]
            y[k] += POLE * y[k - 1]
        y[length - 1] *= -POLE / (1 - POLE * POLE)  # anti-causal start for a zero extension
        for k in range(length - 2, -1, -1):
            y[k] = POLE * (y[k + 1] - y[k])
        x = (6 * y).movedim(0, axis)
    return x


def cubic_grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(x, grid, align_corners=True, padding_mode="zeros")`` with cubic B-spline interpolation.

    ``x``: (B, C, *S) samples; ``grid``: (B, *P, n) in [-1, 1], last axis in (x, y[, z]) order.
    """
    coefficients = bspline_coefficients(x)
    extent = torch.tensor([max(s - 1, 1) for s in reversed(x.shape[2:])], dtype=grid.dtype, device=grid.device)
    position = (grid + 1) * extent / 2                                      # voxel coordinates, (x, y, z) order
    base = torch.floor(position)
    t = position - base
    w0, w1 = (1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6
    w2, w3 = (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6, t ** 3 / 6
    g0, g1 = w0 + w1, w2 + w3
    fetches = ((g0, base - 1 + w1 / g0), (g1, base + 1 + w3 / g1))         # per axis: (weight, where)
    ndim = grid.shape[-1]
    out = None
    for choice in range(2 ** ndim):
        picks = [(choice >> axis) & 1 for axis in range(ndim)]
        where = torch.stack([fetches[p][1][..., a] for a, p in enumerate(picks)], dim=-1)
        weight = math.prod(fetches[p][0][..., a] for a, p in enumerate(picks))
        value = F.grid_sample(coefficients, 2 * where / extent - 1, mode="bilinear", padding_mode="zeros",
                              align_corners=True)
        term = value * weight.unsqueeze(1)
        out = term if out is None else out + term
    return out
