"""The 2.5D generator of seed 000 (BraSyn 2023): a U-Net of 8 stride-2 3x3 conv stages with Mish
activations and a CELU output, fed with k-slice stacks of the input sequences.

Encoder stage ``i`` (``i = 0 .. n_down-1``): conv 3x3 stride 2 -> InstanceNorm(affine) -> Mish; the innermost
stage has no norm (its feature map is 1x1 for a 256^2 patch, as in pix2pix's U-Net). Decoder: transposed
conv 2x2 stride 2 -> InstanceNorm -> Mish, concatenated with the encoder output of the same resolution; the
last transposed conv returns to full resolution, then a 3x3 conv (bias) -> CELU gives the output.
The patch must be divisible by ``2 ** n_down``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from synthunet.architectures.unet import _CONV, _NORM, _TRANSPOSED

#: pix2pix / seed widths for the 8 stages (base 64, doubled, capped at 512)
SEED_N_DOWN = 8
SEED_BASE_FEATURES = 64


def brasyn_features(base: int, n_down: int = SEED_N_DOWN, cap_factor: int = 8) -> list[int]:
    """``base * 2 ** i`` capped at ``cap_factor * base`` (64..512 at the seed's base 64)."""
    return [int(min(base * 2 ** i, cap_factor * base)) for i in range(n_down)]


def _block(module: nn.Module, dimension: int, channels: int, norm: bool) -> nn.Sequential:
    parts = [module]
    if norm:
        parts.append(_NORM["instance"][dimension](channels, affine=True, eps=1e-5))
    parts.append(nn.Mish())
    return nn.Sequential(*parts)


class UNet25DBraSyn(nn.Module):
    """``features``: one width per stride-2 stage (``len(features)`` = number of downsamplings)."""

    def __init__(self, dimension: int, in_channels: int, out_channels: int,
                 features: Sequence[int] | None = None, celu_alpha: float = 1.0) -> None:
        super().__init__()
        features = brasyn_features(SEED_BASE_FEATURES) if features is None else [int(f) for f in features]
        if dimension not in _CONV:
            raise ValueError(f"dimension must be 2 or 3, got {dimension}")
        n = len(features)
        if n < 1:
            raise ValueError("unet25d_brasyn needs at least one stage")
        conv, transposed = _CONV[dimension], _TRANSPOSED[dimension]
        self.n_down = n
        self.encoder = nn.ModuleList()
        channels = in_channels
        for i, width in enumerate(features):
            self.encoder.append(_block(conv(channels, width, 3, 2, 1, bias=False), dimension, width, norm=i < n - 1))
            channels = width
        self.decoder = nn.ModuleList()
        for i in range(n - 1, 0, -1):  # up from stage i to the resolution of stage i - 1
            cin = features[i] if i == n - 1 else 2 * features[i]
            self.decoder.append(_block(transposed(cin, features[i - 1], 2, 2, bias=False), dimension,
                                       features[i - 1], norm=True))
        cin = features[0] if n == 1 else 2 * features[0]
        self.final_up = _block(transposed(cin, features[0], 2, 2, bias=False), dimension, features[0], norm=True)
        self.output = conv(features[0], out_channels, 3, 1, 1, bias=True)
        self.output_activation = nn.CELU(alpha=celu_alpha)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        divisor = 2 ** self.n_down
        if any(s % divisor for s in x.shape[2:]):
            raise ValueError(f"unet25d_brasyn: input {tuple(x.shape[2:])} is not divisible by {divisor}")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = torch.cat((up(x), skips.pop()), dim=1)
        return self.output_activation(self.output(self.final_up(x)))
