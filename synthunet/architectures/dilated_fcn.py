"""Pooling-free 3D FCN with dilated convolutions (seed 002, the generator of the dilated-FCN GAN).

Layer ``i``: conv (kernel ``kernel_sizes[i]``, dilation ``dilations[i]``, 'same' padding, no bias) ->
InstanceNorm(affine) -> LeakyReLU(0.01); the last layer is a linear conv to ``out_channels`` (with bias).
The seed: 9 layers, kernels 9,3,3,3,9,3,3,7,3, filters 32,32,32,64,64,64,32,32,1, dilation 1 at the first and
last layer and 2 inside, no pooling (full resolution throughout). The optional long residual connection
(output + one input channel) is the trainer's ``--residual_input`` (``synthunet.architectures.model_network.ResidualOutput``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from synthunet.architectures.unet import _CONV, _NONLINEARITY, _NORM, _init_weights

#: the seed's layers (the last filter count is the output channel)
SEED_KERNEL_SIZES = (9, 3, 3, 3, 9, 3, 3, 7, 3)
SEED_FEATURES = (32, 32, 32, 64, 64, 64, 32, 32)
SEED_BASE_FEATURES = 32


def seed_dilations(n_layers: int) -> list[int]:
    """1 at the first and last layer, 2 inside (seed 002)."""
    return [1] + [2] * (n_layers - 2) + [1]


class DilatedFCN(nn.Module):
    """``len(kernel_sizes)`` conv layers at full resolution; ``features`` has one entry per hidden layer."""

    def __init__(self, dimension: int, in_channels: int, out_channels: int,
                 features: Sequence[int] = SEED_FEATURES, kernel_sizes: Sequence[int] = SEED_KERNEL_SIZES,
                 dilations: Sequence[int] | None = None, norm: str = "instance",
                 nonlinearity: str = "leaky_relu") -> None:
        super().__init__()
        n_layers = len(kernel_sizes)
        dilations = seed_dilations(n_layers) if dilations is None else [int(d) for d in dilations]
        if len(features) != n_layers - 1 or len(dilations) != n_layers:
            raise ValueError(f"dilated_fcn: {n_layers} kernel sizes need {n_layers - 1} feature counts and "
                             f"{n_layers} dilations, got {len(features)} and {len(dilations)}")
        if dimension not in _CONV:
            raise ValueError(f"dimension must be 2 or 3, got {dimension}")
        conv = _CONV[dimension]
        layers: list[nn.Module] = []
        channels = in_channels
        for kernel, dilation, width in zip(kernel_sizes[:-1], dilations[:-1], features):
            layers += [conv(channels, int(width), int(kernel), padding=int(dilation) * (int(kernel) // 2),
                            dilation=int(dilation), bias=False),
                       _NORM[norm][dimension](int(width), affine=True, eps=1e-5), _NONLINEARITY[nonlinearity]()]
            channels = int(width)
        self.body = nn.Sequential(*layers)
        self.output = conv(channels, out_channels, int(kernel_sizes[-1]),
                           padding=dilations[-1] * (int(kernel_sizes[-1]) // 2), dilation=dilations[-1], bias=True)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(x))
