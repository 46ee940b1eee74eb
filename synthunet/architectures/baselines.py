"""The baseline "networks": a scaled copy of the best input, voxel-wise polynomial regression, and (unpaired)
a quantile mapping of one input onto the target's intensity distribution.

Cheap closed-form reference methods (documentation/trainers/README.md, unpaired.md), registered as architectures, so a fitted
baseline is stored, loaded, predicted and evaluated through exactly the same path as a U-Net. Their fit is
:mod:`synthunet.training.baseline_fitting`; their trainers are :mod:`synthunet.training.trainers.baselines`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def gaussian_kernel_1d(sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Normalised 1D Gaussian with radius ``ceil(truncate * sigma)`` (a single 1 when sigma is 0)."""
    radius = int(torch.ceil(torch.tensor(truncate * sigma)).item()) if sigma > 0 else 0
    if radius == 0:
        return torch.ones(1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_smooth(x: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, C, *spatial)`` per channel, zero padding ('same' size)."""
    channels = x.shape[1]
    spatial = x.ndim - 2
    conv = F.conv3d if spatial == 3 else F.conv2d
    for axis, sigma in enumerate(sigmas):
        kernel = gaussian_kernel_1d(float(sigma)).to(x)
        if kernel.numel() == 1:
            continue
        shape = [1] * spatial
        shape[axis] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, *([1] * spatial))
        padding = [0] * spatial
        padding[axis] = kernel.numel() // 2
        x = conv(x, weight, padding=padding, groups=channels)
    return x


class IdentityScale(nn.Module):
    """``scale * x[:, channel] + offset``: the most correlated input, linearly mapped to the target.

    ``channel``, ``scale`` and ``offset`` are buffers, so each fold's checkpoint carries its own choice.
    """

    #: voxel-wise: inference computes it once on the whole volume, not per window
    closed_form = True

    def __init__(self, dimension: int, in_channels: int, out_channels: int = 1, channel: int = 0) -> None:
        super().__init__()
        if out_channels != 1 or not 0 <= channel < in_channels:
            raise ValueError(f"IdentityScale needs one output and 0 <= channel < {in_channels}, got {channel}")
        self.dimension = dimension
        self.register_buffer("channel", torch.tensor([int(channel)], dtype=torch.long))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("offset", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.channel.to(x.device)) * self.scale + self.offset


def on_support(output: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``output`` set to 0 wherever ``source`` is 0 in every channel (the support rule of the exported predictions)."""
    return output * (source != 0).any(dim=1, keepdim=True).to(output.dtype)


class VoxelRegression(nn.Module):
    """Polynomial regression from each voxel's input intensities and their local means at two scales.

    Features per input channel: the intensity and its Gaussian-smoothed versions at ``sigmas_voxels``
    (one list of per-axis sigmas per scale). The output is a degree-``degree`` polynomial (all products
    of up to ``degree`` features) with coefficients fitted by ridge least squares (:mod:`synthunet.training.baseline_fitting`).
    """

    #: voxel-wise with fixed local means: inference computes it once on the whole volume, not per window
    closed_form = True

    def __init__(self, dimension: int, in_channels: int, out_channels: int = 1,
                 sigmas_voxels: Sequence[Sequence[float]] = ((1.0, 1.0, 1.0), (3.0, 3.0, 3.0)), degree: int = 2) -> None:
        super().__init__()
        if out_channels != 1:
            raise ValueError("VoxelRegression predicts one channel")
        if degree not in (1, 2, 3):
            raise ValueError(f"degree must be 1, 2 or 3, got {degree}")
        self.dimension = dimension
        self.sigmas_voxels = [[float(s) for s in sigmas] for sigmas in sigmas_voxels]
        for sigmas in self.sigmas_voxels:
            if len(sigmas) != dimension:
                raise ValueError(f"each scale needs {dimension} sigmas, got {sigmas}")
        self.degree = degree
        self.num_features = in_channels * (1 + len(self.sigmas_voxels))
        self.terms = polynomial_terms(self.num_features, degree)
        # where the linear and quadratic coefficients sit in ``coefficients`` (the linear terms are (0,), (1,), ...)
        self._linear_terms = [k for k, term in enumerate(self.terms) if len(term) == 1]
        self._quadratic_terms = [k for k, term in enumerate(self.terms) if len(term) == 2]
        self._quadratic_cells = ([self.terms[k][0] for k in self._quadratic_terms],
                                 [self.terms[k][1] for k in self._quadratic_terms])
        self.register_buffer("feature_mean", torch.zeros(self.num_features))
        self.register_buffer("feature_std", torch.ones(self.num_features))
        self.register_buffer("coefficients", torch.zeros(len(self.terms)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F, *spatial)`` standardised features of an input batch."""
        stack = [x] + [gaussian_smooth(x, sigmas) for sigmas in self.sigmas_voxels]
        features = torch.cat(stack, dim=1)
        shape = (1, -1) + (1,) * self.dimension
        return (features - self.feature_mean.reshape(shape)) / self.feature_std.reshape(shape)

    def design(self, features: torch.Tensor) -> torch.Tensor:
        """Polynomial terms ``(B, T, *spatial)`` of standardised features (first term is the constant 1)."""
        columns = []
        for term in self.terms:
            column = torch.ones_like(features[:, :1])
            for index in term:
                column = column * features[:, index:index + 1]
            columns.append(column)
        return torch.cat(columns, dim=1)

    def quadratic_form(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c0, c1, C)``: the degree-2 polynomial as ``c0 + f . c1 + f^T C f`` (``C`` upper triangular)."""
        if self.degree > 2:
            raise ValueError("the quadratic form holds polynomials of degree <= 2")
        quadratic = self.coefficients.new_zeros(self.num_features, self.num_features)
        quadratic[self._quadratic_cells] = self.coefficients[self._quadratic_terms]
        return self.coefficients[0], self.coefficients[self._linear_terms], quadratic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if self.degree <= 2:  # one matrix product per voxel instead of a pass over the volume per term
            c0, c1, quadratic = (t.to(features) for t in self.quadratic_form())
            linear = torch.einsum("ij,bj...->bi...", quadratic, features)
            linear = linear + c1.reshape((1, -1) + (1,) * self.dimension)
            output = c0 + (features * linear).sum(dim=1, keepdim=True)
        else:
            output = torch.zeros_like(features[:, :1])
            for coefficient, term in zip(self.coefficients, self.terms):
                column = torch.ones_like(output) * coefficient
                for index in term:
                    column = column * features[:, index:index + 1]
                output = output + column
        # the fit saw brain voxels only; where every input is exactly 0 (outside the brain after
        # preprocessing, and zero padding) the target is 0 too
        return on_support(output, x)


#: local-mean scales of the regression, in millimetres (Gaussian sigma)
REGRESSION_SIGMAS_MM = (2.0, 6.0)


def regression_sigmas_voxels(spacing, sigmas_mm=REGRESSION_SIGMAS_MM) -> list[list[float]]:
    """Per-axis Gaussian sigmas in voxels for each millimetre scale, at a given voxel spacing."""
    return [[round(mm / float(s), 4) for s in spacing] for mm in sigmas_mm]


def polynomial_terms(num_features: int, degree: int) -> list[tuple[int, ...]]:
    """Index tuples of every monomial of degree <= ``degree`` (``()`` is the constant)."""
    terms: list[tuple[int, ...]] = [()]
    frontier: list[tuple[int, ...]] = [()]
    for _ in range(degree):
        frontier = [term + (i,) for term in frontier for i in range(term[-1] if term else 0, num_features)]
        terms += frontier
    return terms


class QuantileMapping(nn.Module):
    """One input mapped onto the target's intensity distribution: the piecewise-linear map that sends the
    source's quantile levels to the target's (histogram matching), extended linearly beyond the outer levels.

    ``channel``, ``source_levels`` and ``target_levels`` are buffers (fitted from unpaired cases,
    :func:`synthunet.training.baseline_fitting.fit_quantile_mapping`). Tissue matching
    (:mod:`synthunet.training.tissue_matching`) stores its map in the same module: increasing ``source_levels``,
    ``target_levels`` of any shape.
    """

    #: voxel-wise: inference computes it once on the whole volume, not per window
    closed_form = True

    def __init__(self, dimension: int, in_channels: int, out_channels: int = 1, channel: int = 0,
                 num_levels: int = 101) -> None:
        super().__init__()
        if out_channels != 1 or not 0 <= channel < in_channels or num_levels < 2:
            raise ValueError(f"QuantileMapping needs one output, 0 <= channel < {in_channels} and at least 2 "
                             f"levels, got {out_channels}, {channel}, {num_levels}")
        self.dimension = dimension
        self.register_buffer("channel", torch.tensor([int(channel)], dtype=torch.long))
        self.register_buffer("source_levels", torch.linspace(0.0, 1.0, num_levels))
        self.register_buffer("target_levels", torch.linspace(0.0, 1.0, num_levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        source = x.index_select(1, self.channel.to(x.device))
        levels, values = self.source_levels.to(source), self.target_levels.to(source)
        index = torch.searchsorted(levels, source.contiguous()).clamp(1, len(levels) - 1)
        low, high = levels[index - 1], levels[index]
        slope = (values[index] - values[index - 1]) / (high - low)
        return values[index - 1] + slope * (source - low)
