"""Faster inference paths: whole-volume tiles, CPU batch sizes, and settings chosen from a time budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from synthunet.inference import time_budget
from synthunet.inference.time_budget import Setting, candidates, choose_setting, windows_per_pass
from synthunet.prediction.slicewise import predict_along_axis
from synthunet.prediction.sliding_window import (count_windows, default_batch_size, inference_tile_size,
                                                 predict_volume_sliding_window)


def test_tile_is_the_whole_volume_rounded_up_to_the_stride():
    assert inference_tile_size([37, 50, 20], [16, 16, 16], [8, 16, 4]) == [40, 64, 20]
    assert inference_tile_size([10, 10, 10], [16, 16, 16], 8) == [16, 16, 16]  # never below the patch
    assert inference_tile_size([1, 50, 61], [1, 32, 32], [0, 16, 16]) == [1, 64, 64]  # divisor 0 keeps the axis


def test_tile_shrinks_its_longest_axis_to_fit_the_voxel_cap_but_not_below_the_patch():
    tile = inference_tile_size([200, 100, 100], [32, 32, 32], 16, max_voxels=100 * 112 * 112)
    assert tile[1:] == [112, 112] and tile[0] == 96
    assert inference_tile_size([200, 200, 200], [64, 64, 64], 16, max_voxels=10) == [64, 64, 64]


class ConvNetwork(nn.Module):
    """One 3x3x3 convolution with zero padding: no normalisation, so a window's output depends only on its input."""

    def __init__(self, dims: int = 3):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn((1, 2) + (3,) * dims, generator=generator))
        self.dims = dims

    def forward(self, x):
        return (F.conv3d if self.dims == 3 else F.conv2d)(x, self.weight, padding=1)


def test_a_whole_volume_tile_equals_the_convolution_of_the_whole_volume():
    volume = torch.from_numpy(np.random.default_rng(1).random((2, 20, 27, 13), dtype=np.float32))
    network = ConvNetwork()
    tiled = predict_volume_sliding_window(network, volume, [8, 8, 8], 0.5, False, tile_divisor=[4, 4, 4])
    reference = F.conv3d(volume[None], network.weight, padding=1)[0]
    # the tile is 20 x 28 x 16: zero padding beyond the volume is what conv3d's own padding sees
    np.testing.assert_allclose(tiled.numpy(), reference.detach().numpy(), rtol=1e-5, atol=1e-5)
    patched = predict_volume_sliding_window(network, volume, [8, 8, 8], 0.5, False)
    assert not np.allclose(patched.numpy(), reference.detach().numpy(), atol=1e-3)  # windows see zeros at their edges


def test_whole_slice_tiles_in_2d5_keep_one_slice_per_window():
    volume = torch.from_numpy(np.random.default_rng(2).random((1, 6, 21, 18), dtype=np.float32))
    network = ConvNetwork(dims=2)
    stacked_channels = 2  # one input sequence x k = 2 neighbouring slices

    class TwoSlice(nn.Module):
        def forward(self, x):
            return network(x[:, :stacked_channels])

    tiled = predict_along_axis(TwoSlice(), volume, 0, 2, [8, 8], 0.5, False, tile_divisor=[4, 4])
    assert tiled.shape == (1, 6, 21, 18)
    # slice s sees input slices s-1 and s (zero before the first): the whole-plane 2D convolution of that stack
    padded = torch.cat([torch.zeros(1, 1, 21, 18), volume], dim=1)
    stack = torch.stack([padded[0, :-1], padded[0, 1:]], dim=1)  # (S, 2, H, W)
    reference = F.conv2d(stack, network.weight, padding=1)[:, 0]
    np.testing.assert_allclose(tiled[0].numpy(), reference.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_the_batch_size_does_not_change_the_prediction(batch_size):
    volume = torch.from_numpy(np.random.default_rng(3).random((2, 19, 23, 17), dtype=np.float32))
    network = ConvNetwork()
    reference = predict_volume_sliding_window(network, volume, [8, 8, 8], 0.5, True, batch_size=2)
    other = predict_volume_sliding_window(network, volume, [8, 8, 8], 0.5, True, batch_size=batch_size)
    np.testing.assert_allclose(other.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)


def test_cpu_batches_hold_at_least_two_small_patches_and_one_big_tile():
    assert default_batch_size([32, 48, 32], "cpu") == 2
    assert default_batch_size([1, 160, 160], "cpu") == 5
    assert default_batch_size([64, 64, 48], "cpu") == 2
    assert default_batch_size([160, 192, 160], "cpu") == 1


def test_candidates_go_from_the_full_setting_to_the_cheapest():
    options = candidates([0, 1, 2], [True, False], [9, 3, 1])
    assert options[0] == Setting((0, 1, 2), True, 9)
    assert options[-1] == Setting((0,), False, 1)
    assert len(options) == 3 * 2 * 3
    assert options.index(Setting((0, 1, 2), False, 1)) < options.index(Setting((0, 1), True, 9))
    with_steps = candidates([0], [False], [1], [0.75, 0.5])
    assert with_steps == [Setting((0,), False, 1, 0.5), Setting((0,), False, 1, 0.75)]


def test_choose_setting_takes_the_first_that_fits_else_the_cheapest():
    options = candidates([0, 1, 2, 3, 4], [True, False], [1])
    windows = {(1, 0.5): 100}
    # 0.01 s per window: 5 folds x 8 flips x 100 = 40 s; 5 folds without mirroring = 5 s
    chosen, estimate, fits = choose_setting(options, windows, 0.01, False, budget_s=30)
    assert (chosen, fits) == (Setting((0, 1, 2, 3, 4), False, 1), True) and estimate == pytest.approx(5.0)
    chosen, estimate, fits = choose_setting(options, windows, 0.01, False, budget_s=45)
    assert chosen == Setting((0, 1, 2, 3, 4), True, 1) and estimate == pytest.approx(40.0)
    chosen, _, fits = choose_setting(options, windows, 1.0, False, budget_s=30)
    assert (chosen, fits) == (Setting((0,), False, 1), False)


def test_windows_per_pass_counts_slices_times_plane_windows():
    assert windows_per_pass([40, 50, 30], [16, 16, 16], 0.5, False) == count_windows([40, 50, 30], [16, 16, 16], 0.5)
    # 2.5d, one orientation along axis 0: 40 slices x windows of the 50 x 30 plane
    assert windows_per_pass([40, 50, 30], [16, 16], 0.5, True, 1) == 40 * count_windows([50, 30], [16, 16], 0.5)
    three = windows_per_pass([40, 50, 30], [16, 16], 0.5, True, 3)
    assert three == (40 * count_windows([50, 30], [16, 16], 0.5) + 50 * count_windows([40, 30], [16, 16], 0.5)
                     + 30 * count_windows([40, 50], [16, 16], 0.5))
    assert windows_per_pass([40, 50, 30], [16, 16], 0.5, True, 9) > three


def test_seconds_per_window_is_measured_on_the_network():
    calls = []

    class Slow(nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x[:, :1]

    assert time_budget.seconds_per_window(Slow(), (3, 8, 8, 8), 4) >= 0
    assert calls == [(4, 3, 8, 8, 8)] * 2  # a warm-up and one timed batch
