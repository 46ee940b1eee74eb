"""2.5D prediction along one slicing axis: stacks of neighbouring slices in, the central slice out.

Input layout (documentation/model_folder_format.md): channel ``i * k + j`` of the 2D network's input is
input sequence ``i`` at slice offset ``j - k // 2`` (``k = num_slices``), zeros beyond the volume edge; the
network's two spatial axes are the volume's other axes in their original order.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from synthunet.prediction.sliding_window import predict_sliding_window


def stack_neighbour_slices(data: torch.Tensor, axis: int, num_slices: int) -> torch.Tensor:
    """``(C, *spatial3)`` -> ``(C * k, S, H, W)``: the slicing axis first, ``k`` shifted copies per channel.

    Entry ``[i * k + j, s]`` is channel ``i`` at slice ``s + j - k // 2`` (zero outside the volume).
    """
    if data.ndim != 4:
        raise ValueError(f"expected (C, z, y, x), got shape {tuple(data.shape)}")
    others = [a for a in range(3) if a != axis]
    moved = data.permute(0, 1 + axis, 1 + others[0], 1 + others[1])
    before = num_slices // 2
    after = num_slices - 1 - before
    n = moved.shape[1]
    padded = torch.nn.functional.pad(moved, (0, 0, 0, 0, before, after))
    stacked = torch.stack([padded[:, j:j + n] for j in range(num_slices)], dim=1)  # (C, k, S, H, W)
    return stacked.reshape(data.shape[0] * num_slices, n, *moved.shape[2:])


class SliceNetwork(nn.Module):
    """Runs a 2D network on ``(B, C, 1, h, w)`` patches so the nD sliding window can drive it."""

    def __init__(self, network: nn.Module | Callable) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x[:, :, 0])
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.unsqueeze(2)


def _restore_axis_order(out: torch.Tensor, axis: int) -> torch.Tensor:
    """``(C, S, H, W)`` with the slicing axis first -> ``(C, z, y, x)``."""
    others = [a for a in range(3) if a != axis]
    order = [0, 0, 0, 0]
    order[1 + axis], order[1 + others[0]], order[1 + others[1]] = 1, 2, 3
    return out.permute(*order).contiguous()


def predict_along_axis(network: nn.Module | Callable | Sequence[nn.Module], data: torch.Tensor | np.ndarray,
                       axis: int, num_slices: int, patch_size: Sequence[int], step_size: float = 0.5,
                       use_mirroring: bool = True, batch_size: int | None = None,
                       device: torch.device | str | None = None, use_amp: bool = True,
                       progress: Callable[[int], None] | None = None,
                       tile_divisor: Sequence[int] | None = None) -> torch.Tensor | list[torch.Tensor]:
    """Predict every slice of ``(C, z, y, x)`` along ``axis`` with a 2.5D network; return ``(C_out, z, y, x)``.

    Slices are batched; within a slice, a 2D sliding window with Gaussian weighting covers planes
    larger than ``patch_size``. Mirroring flips the two in-plane axes (4 combinations). A list of
    networks (folds) shares the slice stacks and returns a list of predictions. ``tile_divisor`` (the 2D
    network's total stride per in-plane axis): each slice is predicted whole, in one window.
    """
    data = torch.as_tensor(data).float()
    if len(patch_size) != 2:
        raise ValueError(f"2.5D prediction needs a 2D patch size, got {tuple(patch_size)}")
    several = isinstance(network, (list, tuple, nn.ModuleList))
    networks = list(network) if several else [network]
    stacked = stack_neighbour_slices(data, axis, num_slices)
    outputs = []
    for net in networks:
        out = predict_sliding_window(SliceNetwork(net), stacked, (1, *patch_size), step_size,
                                     mirror_axes=(1, 2) if use_mirroring else (), batch_size=batch_size,
                                     device=device, use_amp=use_amp, progress=progress,
                                     tile_divisor=None if tile_divisor is None else (0, *tile_divisor))
        outputs.append(_restore_axis_order(out, axis))
    return outputs if several else outputs[0]
