"""The AN-GAN generator of seed 003 (Mao et al. 2022): an encoder-decoder whose decoder normalisation layers
are *adaptive* (AN, seed eq. 6-7): activations are normalised per channel, then modulated by a spatially
varying scale and shift predicted from a high-frequency mask of the source image (SPADE-like).

    encoder   conv 3x3 -> IN -> LeakyReLU at full resolution, then ``n_down`` x (conv 3x3 stride 2 -> IN ->
              LeakyReLU), widths ``features[0..n_down]``
    bottleneck ``n_res_blocks`` residual blocks (conv 3x3 -> IN -> LeakyReLU -> conv 3x3 -> IN, + input)
    decoder   per level, coarse to fine: transposed conv 2x2 stride 2 -> AN -> LeakyReLU -> conv 3x3 -> AN ->
              LeakyReLU (the seed's "three deconvolution layers" with 3x3 convs, Figure 5)
    output    conv 3x3 with bias, linear

AN(h, m) = IN(h) * (1 + gamma(m)) + beta(m): ``IN`` is a parameter-free instance norm; ``gamma`` and ``beta`` are
3x3 convs on a shared 3x3 conv + ReLU of the mask (SPADE's head). gamma and beta start at zero, so an untrained
AN is exactly instance norm. Eq. 6 writes ``gamma * norm + beta``; ``1 + gamma`` is the same family with the
identity at gamma = 0.

High-frequency mask (the seed does not give the filter; "high-frequency information of the source image"):
``m = x - G_sigma * x`` per input channel, the source minus its Gaussian blur (sigma = ``mask_sigma`` voxels,
separable depthwise convolutions with zero padding), i.e. a difference of Gaussians between sigma = 0 and
sigma. For a decoder level at 1/2^j resolution the mask is computed the same way from the source averaged down
to that level (``avg_pool``), so every level sees the high frequencies of its own scale (one band of a
Laplacian pyramid); averaging the full-resolution mask down instead would cancel its signed values.

2D (the 2.5d configuration; seed 003 works on slices); ``dimension`` 3 builds the same network in 3D. The
input size must be divisible by ``2 ** n_down``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from synthunet.architectures.unet import _CONV, _NORM, _TRANSPOSED

#: the seed's decoder has three stride-2 deconvolutions
SEED_N_DOWN = 3
SEED_BASE_FEATURES = 64
#: residual blocks at the bottleneck (CycleGAN's generator, on which AN-GAN builds, uses 6 for 128^2 images)
SEED_N_RES_BLOCKS = 6
#: features grow 2x per level up to this multiple of the base (CycleGAN: 64-128-256)
FEATURE_CAP_FACTOR = 4
MASK_SIGMA = 1.0
NEGATIVE_SLOPE = 0.01
_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV_FN = {2: F.conv2d, 3: F.conv3d}


def angan_features(base: int, n_down: int = SEED_N_DOWN, cap_factor: int = FEATURE_CAP_FACTOR) -> list[int]:
    """Widths of the ``n_down + 1`` levels: ``base * 2 ** i`` capped at ``cap_factor * base``."""
    return [int(min(base * 2 ** i, cap_factor * base)) for i in range(n_down + 1)]


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1D Gaussian taps, radius ``ceil(2 sigma)``."""
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    return (taps / taps.sum()).float()


class HighFrequencyMask(nn.Module):
    """``x - G_sigma * x`` per channel (separable depthwise Gaussian, zero padding). No trainable parameters."""

    def __init__(self, dimension: int, channels: int, sigma: float = MASK_SIGMA) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"mask_sigma must be positive, got {sigma}")
        self.dimension, self.channels = dimension, int(channels)
        self.register_buffer("taps", gaussian_kernel(sigma), persistent=False)  # not in the state dict

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        radius = (self.taps.numel() - 1) // 2
        for axis in range(self.dimension):
            shape = [1] * (2 + self.dimension)
            shape[2 + axis] = self.taps.numel()
            weight = self.taps.to(x.dtype).view(shape).repeat(self.channels, *[1] * (1 + self.dimension))
            padding = [0] * self.dimension
            padding[axis] = radius
            x = _CONV_FN[self.dimension](x, weight, padding=tuple(padding), groups=self.channels)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.blur(x)


class AdaptiveNorm(nn.Module):
    """AN (seed eq. 6): ``IN(h) * (1 + gamma(m)) + beta(m)`` with gamma, beta predicted per voxel from the mask."""

    def __init__(self, dimension: int, channels: int, mask_channels: int, hidden: int, eps: float = 1e-5) -> None:
        super().__init__()
        conv = _CONV[dimension]
        self.norm = _NORM["instance"][dimension](channels, affine=False, eps=eps)
        self.shared = nn.Sequential(conv(mask_channels, hidden, 3, 1, 1), nn.ReLU())
        self.gamma = conv(hidden, channels, 3, 1, 1)
        self.beta = conv(hidden, channels, 3, 1, 1)
        self.reset_modulation()

    def reset_modulation(self) -> None:
        """gamma = beta = 0: the layer is plain instance norm (the initial state)."""
        for layer in (self.gamma, self.beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.shape[2:] != h.shape[2:]:
            raise ValueError(f"AdaptiveNorm: mask {tuple(mask.shape[2:])} does not match activations "
                             f"{tuple(h.shape[2:])}")
        features = self.shared(mask)
        return self.norm(h) * (1 + self.gamma(features)) + self.beta(features)


class _ConvNormAct(nn.Sequential):
    def __init__(self, dimension: int, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(_CONV[dimension](cin, cout, 3, stride, 1, bias=False),
                         _NORM["instance"][dimension](cout, affine=True, eps=1e-5),
                         nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))


class ResidualBlock(nn.Module):
    """conv -> IN -> LeakyReLU -> conv -> IN, plus the input."""

    def __init__(self, dimension: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ConvNormAct(dimension, channels, channels),
                                  _CONV[dimension](channels, channels, 3, 1, 1, bias=False),
                                  _NORM["instance"][dimension](channels, affine=True, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DecoderLevel(nn.Module):
    """transposed conv 2x2 stride 2 -> AN -> LeakyReLU -> conv 3x3 -> AN -> LeakyReLU."""

    def __init__(self, dimension: int, cin: int, cout: int, mask_channels: int, hidden: int) -> None:
        super().__init__()
        self.up = _TRANSPOSED[dimension](cin, cout, 2, 2, bias=False)
        self.norm1 = AdaptiveNorm(dimension, cout, mask_channels, hidden)
        self.conv = _CONV[dimension](cout, cout, 3, 1, 1, bias=False)
        self.norm2 = AdaptiveNorm(dimension, cout, mask_channels, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm1(self.up(x), mask), NEGATIVE_SLOPE, inplace=True)
        return F.leaky_relu(self.norm2(self.conv(x), mask), NEGATIVE_SLOPE, inplace=True)


class ANGANGenerator(nn.Module):
    """``features``: one width per level (``len(features) - 1`` = number of stride-2 downsamplings)."""

    def __init__(self, dimension: int, in_channels: int, out_channels: int, features: Sequence[int] | None = None,
                 n_res_blocks: int = SEED_N_RES_BLOCKS, mask_hidden: int | None = None,
                 mask_sigma: float = MASK_SIGMA) -> None:
        super().__init__()
        if dimension not in _CONV:
            raise ValueError(f"dimension must be 2 or 3, got {dimension}")
        features = angan_features(SEED_BASE_FEATURES) if features is None else [int(f) for f in features]
        if len(features) < 2:
            raise ValueError("angan needs at least two levels (one downsampling)")
        if n_res_blocks < 0:
            raise ValueError(f"n_res_blocks must be >= 0, got {n_res_blocks}")
        hidden = int(mask_hidden or features[0])
        self.dimension, self.n_down = dimension, len(features) - 1
        self.mask = HighFrequencyMask(dimension, in_channels, mask_sigma)
        self.stem = _ConvNormAct(dimension, in_channels, features[0])
        self.down = nn.ModuleList(_ConvNormAct(dimension, features[i], features[i + 1], stride=2)
                                  for i in range(self.n_down))
        self.bottleneck = nn.Sequential(*[ResidualBlock(dimension, features[-1]) for _ in range(n_res_blocks)])
        self.decoder = nn.ModuleList(DecoderLevel(dimension, features[i], features[i - 1], in_channels, hidden)
                                     for i in range(self.n_down, 0, -1))
        self.output = _CONV[dimension](features[0], out_channels, 3, 1, 1, bias=True)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():  # after the loop above, which also visits gamma and beta
            if isinstance(module, AdaptiveNorm):
                module.reset_modulation()

    def masks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The high-frequency mask at every decoder level, level ``j`` at 1/2^j resolution (j = 0 .. n_down-1)."""
        return [self.mask(x if j == 0 else _POOL[self.dimension](x, 2 ** j)) for j in range(self.n_down)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        divisor = 2 ** self.n_down
        if any(s % divisor for s in x.shape[2:]):
            raise ValueError(f"angan: input {tuple(x.shape[2:])} is not divisible by {divisor}")
        masks = self.masks(x)
        h = self.stem(x)
        for down in self.down:
            h = down(h)
        h = self.bottleneck(h)
        for level, decoder in zip(range(self.n_down - 1, -1, -1), self.decoder):
            h = decoder(h, masks[level])
        return self.output(h)
