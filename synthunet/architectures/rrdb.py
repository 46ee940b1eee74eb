"""RRDB generator of ESRGAN (Wang et al. 2018; seed 004 §3.2, Fig. 3), in 2D or 3D, without upsampling.

    feat = first(x)                                      conv 3, in -> F
    feat = feat + body_conv(RRDB_n(... RRDB_1(feat)))     long skip from the first conv
    out  = output(LeakyReLU(hr_conv(feat)))             conv 3 F -> F, LeakyReLU, conv 3 F -> out (linear)

RRDB (residual in residual dense block) = three residual dense blocks, ``out = 0.2 * RDB3(RDB2(RDB1(x))) + x``.
Residual dense block with growth G: ``x_i = LeakyReLU(conv_i(cat(x, x_1, ..., x_{i-1})))`` for i = 1..4 (G
features each), ``x_5 = conv_5(cat(x, x_1, ..., x_4))`` (F features), ``out = 0.2 * x_5 + x``. Every conv is
3x3(x3) with bias, stride 1, 'same' padding; LeakyReLU slope 0.2, in place; no batch norm (ESRGAN removed it).

ESRGAN upsamples by 4 with two nearest-neighbour + conv stages between the long skip and ``hr_conv``. In
synthUNet the low-resolution input already lies on the high-resolution grid (every channel of a case shares
one grid; see documentation/super_resolution.md), so input and output have the same size and there is no
upsampling layer. Initialisation as ESRGAN: the dense-block convs Kaiming-normal scaled by 0.1 (bias 0),
the other convs PyTorch's default.
"""
from __future__ import annotations

import torch
from torch import nn

from synthunet.architectures.unet import _CONV

#: ESRGAN's generator: 64 features, growth 32, 23 RRDBs, residual scaling 0.2, LeakyReLU 0.2
SEED_FEATURES = 64
SEED_GROWTH = 32
SEED_N_BLOCKS = 23
RESIDUAL_SCALE = 0.2
NEGATIVE_SLOPE = 0.2
#: dense-block convs are initialised Kaiming-normal times this (ESRGAN)
DENSE_INIT_SCALE = 0.1
#: convs of a residual dense block
DENSE_LAYERS = 5
#: residual dense blocks per RRDB
DENSE_BLOCKS = 3


def _conv(dimension: int, cin: int, cout: int) -> nn.Module:
    return _CONV[dimension](cin, cout, 3, 1, 1, bias=True)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; the fifth maps back to ``features``, scaled by 0.2 and added to the input."""

    def __init__(self, dimension: int, features: int, growth: int, residual_scale: float = RESIDUAL_SCALE) -> None:
        super().__init__()
        self.convs = nn.ModuleList([_conv(dimension, features + i * growth,
                                          growth if i < DENSE_LAYERS - 1 else features) for i in range(DENSE_LAYERS)])
        self.activation = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)
        self.residual_scale = float(residual_scale)
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(DENSE_INIT_SCALE)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs[:-1]:
            features.append(self.activation(conv(torch.cat(features, dim=1) if len(features) > 1 else x)))
        return self.convs[-1](torch.cat(features, dim=1)) * self.residual_scale + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, scaled by 0.2 and added to the input."""

    def __init__(self, dimension: int, features: int, growth: int, residual_scale: float = RESIDUAL_SCALE) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualDenseBlock(dimension, features, growth, residual_scale)
                                      for _ in range(DENSE_BLOCKS)])
        self.residual_scale = float(residual_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x) * self.residual_scale + x


class RRDBNet(nn.Module):
    """ESRGAN's generator at the input's resolution (no upsampling layer), 2D or 3D; linear output."""

    def __init__(self, dimension: int, in_channels: int, out_channels: int, features: int = SEED_FEATURES,
                 growth: int = SEED_GROWTH, n_blocks: int = SEED_N_BLOCKS,
                 residual_scale: float = RESIDUAL_SCALE) -> None:
        super().__init__()
        if dimension not in _CONV:
            raise ValueError(f"dimension must be 2 or 3, got {dimension}")
        features, growth, n_blocks = int(features), int(growth), int(n_blocks)
        if features < 1 or growth < 1 or n_blocks < 1:
            raise ValueError(f"rrdb needs positive features, growth and n_blocks, got {features}, {growth}, {n_blocks}")
        self.first = _conv(dimension, in_channels, features)
        self.body = nn.Sequential(*[RRDB(dimension, features, growth, residual_scale) for _ in range(n_blocks)])
        self.body_conv = _conv(dimension, features, features)
        self.hr_conv = _conv(dimension, features, features)
        self.activation = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)
        self.output = _conv(dimension, features, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.first(x)
        features = features + self.body_conv(self.body(features))
        return self.output(self.activation(self.hr_conv(features)))
