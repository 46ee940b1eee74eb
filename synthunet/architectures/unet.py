"""Plain (residual-free) U-Net for 2D or 3D synthesis, configured only by the plans.

Encoder stage ``s``: ``n_conv`` blocks of conv -> InstanceNorm(affine) -> LeakyReLU(0.01); the first
conv of every stage but the first carries the stage's stride (strided-conv downsampling).
Decoder stage ``s``: transposed conv (kernel = stride) from stage ``s + 1``, concatenation with the
encoder output of stage ``s``, ``n_conv_decoder`` blocks. Output: linear 1x1 conv.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from torch import nn

from synthunet.architectures.instance_norm import InstanceNorm3d

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
#: in 3D the norm keeps channels-last inference batches channels-last and overwrites the conv output it follows
_NORM = {"instance": {2: nn.InstanceNorm2d, 3: partial(InstanceNorm3d, inplace=True)}}
_NONLINEARITY = {"leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.01, inplace=True)}


def _per_stage(value: int | Sequence[int], n_stages: int, name: str) -> list[int]:
    values = [int(value)] * n_stages if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n_stages:
        raise ValueError(f"{name} has {len(values)} entries, expected one per stage ({n_stages})")
    return values


class ConvBlock(nn.Sequential):
    """conv -> norm -> nonlinearity; the conv has no bias (instance norm removes it)."""

    def __init__(self, dimension: int, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: Sequence[int], norm: str, nonlinearity: str) -> None:
        padding = [k // 2 for k in kernel_size]
        super().__init__(
            _CONV[dimension](in_channels, out_channels, tuple(kernel_size), tuple(stride), tuple(padding), bias=False),
            _NORM[norm][dimension](out_channels, affine=True, eps=1e-5),
            _NONLINEARITY[nonlinearity]())


class PlainUNet(nn.Module):
    """U-Net with strided-conv downsampling, transposed-conv upsampling and skip concatenation."""

    channels_last_on_cpu = True  # 3D inference on a CPU is faster with channels-last batches (issue 21)

    def __init__(self, dimension: int, in_channels: int, out_channels: int, n_stages: int,
                 features_per_stage: Sequence[int], kernel_sizes: Sequence[Sequence[int]],
                 strides: Sequence[Sequence[int]], n_conv_per_stage: int | Sequence[int] = 2,
                 n_conv_per_stage_decoder: int | Sequence[int] = 2, norm: str = "instance",
                 nonlinearity: str = "leaky_relu") -> None:
        super().__init__()
        if dimension not in _CONV:
            raise ValueError(f"dimension must be 2 or 3, got {dimension}")
        if norm not in _NORM:
            raise ValueError(f"Unknown norm {norm!r}; known: {sorted(_NORM)}")
        if nonlinearity not in _NONLINEARITY:
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}; known: {sorted(_NONLINEARITY)}")
        features = _per_stage(features_per_stage, n_stages, "features_per_stage")
        n_enc = _per_stage(n_conv_per_stage, n_stages, "n_conv_per_stage")
        n_dec = _per_stage(n_conv_per_stage_decoder, n_stages - 1, "n_conv_per_stage_decoder")
        if len(kernel_sizes) != n_stages or len(strides) != n_stages:
            raise ValueError("kernel_sizes and strides need one entry per stage")
        if any(len(k) != dimension for k in kernel_sizes) or any(len(s) != dimension for s in strides):
            raise ValueError(f"kernel sizes and strides must have {dimension} entries each")
        self.dimension = dimension
        self.strides = [list(map(int, s)) for s in strides]
        self.encoder = nn.ModuleList()
        channels = in_channels
        for stage in range(n_stages):
            blocks = [ConvBlock(dimension, channels, features[stage], kernel_sizes[stage], strides[stage], norm,
                                nonlinearity)]
            blocks += [ConvBlock(dimension, features[stage], features[stage], kernel_sizes[stage], [1] * dimension,
                                 norm, nonlinearity) for _ in range(n_enc[stage] - 1)]
            self.encoder.append(nn.Sequential(*blocks))
            channels = features[stage]
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for stage in range(n_stages - 2, -1, -1):
            stride = tuple(self.strides[stage + 1])
            self.upsample.append(_TRANSPOSED[dimension](features[stage + 1], features[stage], stride, stride,
                                                        bias=False))
            blocks = [ConvBlock(dimension, 2 * features[stage], features[stage], kernel_sizes[stage], [1] * dimension,
                                norm, nonlinearity)]
            blocks += [ConvBlock(dimension, features[stage], features[stage], kernel_sizes[stage], [1] * dimension,
                                 norm, nonlinearity) for _ in range(n_dec[stage] - 1)]
            self.decoder.append(nn.Sequential(*blocks))
        self.output = _CONV[dimension](features[0], out_channels, 1, bias=True)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for upsample, decoder in zip(self.upsample, self.decoder):
            x = decoder(torch.cat((upsample(x), skips.pop()), dim=1))
        return self.output(x)


def _init_weights(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.01), as nnU-Net does."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
