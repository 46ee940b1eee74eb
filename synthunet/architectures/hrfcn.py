"""High-resolution FCN of seed 001 (virtual contrast enhancement): per-input stems, three parallel
resolution streams with repeated multi-scale fusion, ResBlocks of conv -> norm -> ReLU.

With ``w = features`` (one width per stream; the seed: 64, 128, 256) and phi = an FCN module of
``n_blocks`` ResBlocks (the first maps its input width to the stream width):

    stem      F11 = cat_c phi_c(x_c)                (one branch per input channel, fused by concatenation)
              F12 = D(F11)
    stage 2   F21 = phi(F11); F22 = phi(F12); F23 = D(F22)
    stage 3   F3j = phi(cat(F2j, resampled F2i for the streams i that exist at stage 2, i != j, i < 3))
    stage 4   F4j = phi(cat(resampled F3i for every stream i))
    stage 5   F5  = cat(F41, U2(F42), U4(F43)) -> ResBlock -> 1x1 conv (linear) -> output

ResBlock(cin, cout): x -> CNR(cin, cout) -> CNR(cout, cout), plus ``x`` (a 1x1 conv when cin != cout).
Downsampling D: stride-2 3x3 CNR (two of them for 4x); upsampling U: 1x1 conv -> norm -> nearest upsampling
(HRNet's exchange units). Norm: instance norm (the seed uses batch norm with batch 3).
The patch must be divisible by 4 on every axis.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from synthunet.architectures.unet import _CONV, _NORM

SEED_FEATURES = (64, 128, 256)
SEED_N_BLOCKS = 4
#: the three streams run at 1, 1/2 and 1/4 resolution
STREAM_FACTORS = (1, 2, 4)


class CNR(nn.Sequential):
    """conv (no bias) -> instance norm -> in-place ReLU."""

    def __init__(self, dimension: int, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(_CONV[dimension](cin, cout, kernel, stride, kernel // 2, bias=False),
                         _NORM["instance"][dimension](cout, affine=True, eps=1e-5), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, dimension: int, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(CNR(dimension, cin, cout), CNR(dimension, cout, cout))
        self.shortcut = nn.Identity() if cin == cout else _CONV[dimension](cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def fcn_module(dimension: int, cin: int, cout: int, n_blocks: int) -> nn.Sequential:
    """phi: ``n_blocks`` ResBlocks, the first from ``cin`` to ``cout``."""
    return nn.Sequential(*[ResBlock(dimension, cin if i == 0 else cout, cout) for i in range(n_blocks)])


class Down(nn.Sequential):
    """``factor`` = 2 or 4: one or two stride-2 3x3 CNR layers (the last to ``cout``)."""

    def __init__(self, dimension: int, cin: int, cout: int, factor: int) -> None:
        steps = {2: 1, 4: 2}[factor]
        super().__init__(*[CNR(dimension, cin if i < steps - 1 else cin, cin if i < steps - 1 else cout, 3, 2)
                           for i in range(steps)])


class Up(nn.Sequential):
    """1x1 conv -> norm -> nearest upsampling by ``factor``."""

    def __init__(self, dimension: int, cin: int, cout: int, factor: int) -> None:
        super().__init__(_CONV[dimension](cin, cout, 1, bias=False),
                         _NORM["instance"][dimension](cout, affine=True, eps=1e-5),
                         nn.Upsample(scale_factor=factor, mode="nearest"))


def resample(dimension: int, features: Sequence[int], source: int, target: int) -> nn.Module:
    """The exchange unit from stream ``source`` to stream ``target`` (identity when equal)."""
    if source == target:
        return nn.Identity()
    factor = STREAM_FACTORS[abs(target - source)] if abs(target - source) else 1
    if target > source:
        return Down(dimension, features[source], features[target], factor)
    return Up(dimension, features[source], features[target], factor)


#: (stage, stream) -> the streams of the previous stage that are fused into it
FUSION = {3: {0: (0, 1), 1: (1, 0), 2: (2, 0)}, 4: {0: (0, 1, 2), 1: (0, 1, 2), 2: (0, 1, 2)}}


class HRFCN(nn.Module):
    def __init__(self, dimension: int, in_channels: int, out_channels: int,
                 features: Sequence[int] = SEED_FEATURES, n_blocks: int = SEED_N_BLOCKS,
                 n_stem_blocks: int | None = None) -> None:
        super().__init__()
        if dimension not in _CONV:
            raise ValueError(f"dimension must be 2 or 3, got {dimension}")
        features = [int(f) for f in features]
        if len(features) != 3:
            raise ValueError(f"hrfcn has three streams, got {len(features)} widths")
        n_stem_blocks = n_blocks if n_stem_blocks is None else int(n_stem_blocks)
        d, w = dimension, features
        self.in_channels = in_channels
        self.stems = nn.ModuleList([fcn_module(d, 1, w[0], n_stem_blocks) for _ in range(in_channels)])
        stem_width = in_channels * w[0]
        self.stem_down = Down(d, stem_width, w[1], 2)
        self.stage2 = nn.ModuleList([fcn_module(d, stem_width, w[0], n_blocks), fcn_module(d, w[1], w[1], n_blocks)])
        self.stage2_down = Down(d, w[1], w[2], 2)
        self.exchange = nn.ModuleDict()
        self.stages = nn.ModuleDict()
        for stage, plan in FUSION.items():
            for target, sources in plan.items():
                self.stages[f"{stage}_{target}"] = fcn_module(d, sum(w[target] for _ in sources), w[target], n_blocks)
                for source in sources:
                    if source != target:
                        self.exchange[f"{stage}_{source}_{target}"] = resample(d, w, source, target)
        self.final_up = nn.ModuleList([resample(d, w, s, 0) for s in (1, 2)])
        self.head = ResBlock(d, 3 * w[0], w[0])
        self.output = _CONV[d](w[0], out_channels, 1, bias=True)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 4 for s in x.shape[2:]):
            raise ValueError(f"hrfcn: input {tuple(x.shape[2:])} is not divisible by 4")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"hrfcn was built for {self.in_channels} input channels, got {x.shape[1]}")
        f11 = torch.cat([stem(x[:, c:c + 1]) for c, stem in enumerate(self.stems)], dim=1)
        f12 = self.stem_down(f11)
        f21, f22 = self.stage2[0](f11), self.stage2[1](f12)
        streams = [f21, f22, self.stage2_down(f22)]
        for stage, plan in FUSION.items():
            new = []
            for target, sources in plan.items():
                parts = [streams[s] if s == target else self.exchange[f"{stage}_{s}_{target}"](streams[s])
                         for s in sources]
                new.append(self.stages[f"{stage}_{target}"](torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]))
            streams = new
        f5 = torch.cat([streams[0], self.final_up[0](streams[1]), self.final_up[1](streams[2])], dim=1)
        return self.output(self.head(f5))
