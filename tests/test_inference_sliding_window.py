"""3D sliding window (Gaussian weighting, batching, mirroring, padding) and 2.5D slice-wise prediction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthunet.inference.testing import ChannelNetwork, ConstantNetwork
from synthunet.prediction.ensembling import VoxelStatistics
from synthunet.prediction.slicewise import predict_along_axis, stack_neighbour_slices
from synthunet.prediction.sliding_window import (count_windows, gaussian_importance_map, mirror_combinations,
                                                 predict_sliding_window, predict_volume_sliding_window,
                                                 sliding_window_starts)


def random_volume(shape, channels=3, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((channels, *shape), dtype=np.float32))


def test_gaussian_map_peak_symmetry_and_floor():
    weights = gaussian_importance_map((16, 15, 8)).numpy()
    assert weights.shape == (16, 15, 8)
    assert weights.max() == pytest.approx(1.0)
    assert weights.min() >= 1e-4
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1], rtol=1e-6)
    assert weights[7, 7, 3] > weights[0, 7, 3]


@pytest.mark.parametrize("image,patch,step", [(37, 16, 0.5), (16, 16, 0.5), (100, 32, 0.25), (9, 1, 0.5)])
def test_window_starts_cover_the_image(image, patch, step):
    starts = sliding_window_starts([image], [patch], step)[0]
    assert starts[0] == 0 and starts[-1] == image - patch
    assert len(set(starts)) == len(starts)
    assert max(np.diff(starts), default=0) <= max(patch * step, 1) + 1e-9
    covered = np.zeros(image, bool)
    for s in starts:
        covered[s:s + patch] = True
    assert covered.all()


def test_mirror_combinations():
    assert len(mirror_combinations((0, 1, 2))) == 8
    assert mirror_combinations((1, 2))[0] == ()


@pytest.mark.parametrize("use_mirroring", [False, True])
def test_constant_network_gives_the_constant_exactly(use_mirroring):
    data = random_volume((37, 50, 29))
    out = predict_volume_sliding_window(ConstantNetwork(0.7316), data, (16, 16, 16), 0.5, use_mirroring, batch_size=3)
    assert out.shape == (1, 37, 50, 29) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), 0.7316, rtol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_identity_network_reproduces_its_input_channel(batch_size):
    data = random_volume((21, 30, 11))  # x smaller than the patch: padded and cropped back
    out = predict_volume_sliding_window(ChannelNetwork(1), data, (16, 16, 16), 0.5, True, batch_size=batch_size)
    assert out.shape == (1, 21, 30, 11)
    np.testing.assert_allclose(out[0].numpy(), data[1].numpy(), atol=1e-6)


def test_mirroring_flips_back():
    """A network that looks at a corner is not flip-invariant: TTA must average predictions flipped back."""
    class Ramp(torch.nn.Module):
        def forward(self, x):
            ramp = torch.linspace(0, 1, x.shape[-1]).expand(x.shape[0], 1, *x.shape[2:])
            return x[:, :1] * 0 + ramp
    data = random_volume((8, 8, 8), channels=1)
    out = predict_sliding_window(Ramp(), data, (8, 8, 8), mirror_axes=(0, 1, 2))
    np.testing.assert_allclose(out.numpy(), 0.5, atol=1e-6)  # ramp and its mirror average to 0.5


def test_empty_patches_are_skipped():
    data = random_volume((40, 20, 20), channels=2)
    data[:, 20:] = 0  # background: the last 20 slices
    calls = []

    def network(x):
        calls.append(x.shape[0])
        return x[:, :1]
    out = predict_sliding_window(network, data, (16, 16, 16), 0.5, batch_size=1)
    assert sum(calls) < 4 * 2 * 2  # some of the 4 x 2 x 2 windows were not predicted
    np.testing.assert_allclose(out[0].numpy(), data[0].numpy(), atol=1e-6)  # still exact, 0 in the background
    full = predict_sliding_window(network, data, (16, 16, 16), 0.5, batch_size=1, skip_empty=False)
    np.testing.assert_allclose(full.numpy(), out.numpy(), atol=1e-6)


def test_network_changing_the_patch_size_is_an_error():
    with pytest.raises(RuntimeError, match="keep the patch size"):
        predict_sliding_window(lambda x: x[:, :1, :-1], random_volume((8, 8, 8)), (8, 8, 8))


def test_count_windows():
    assert count_windows((155, 240, 240), (64, 64, 64), 0.5) == 4 * 7 * 7


def test_stack_neighbour_slices_layout():
    data = torch.arange(2 * 4 * 2 * 3, dtype=torch.float32).reshape(2, 4, 2, 3)
    stacked = stack_neighbour_slices(data, axis=1, num_slices=3)  # slicing along y (length 2)
    assert stacked.shape == (6, 2, 4, 3)
    # channel i * k + j at slice s is input channel i at slice s + j - 1 along y; zero beyond the edge
    for i in range(2):
        for j in range(3):
            for s in range(2):
                source = s + j - 1
                expected = data[i, :, source, :] if 0 <= source < 2 else torch.zeros(4, 3)
                assert torch.equal(stacked[i * 3 + j, s], expected)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slicewise_identity_reproduces_the_volume(axis):
    data = random_volume((9, 20, 13), channels=2)
    k = 3
    central_of_channel_1 = ChannelNetwork(1 * k + k // 2)
    out = predict_along_axis(central_of_channel_1, data, axis, k, (16, 16), use_mirroring=True)
    assert out.shape == (1, 9, 20, 13)
    np.testing.assert_allclose(out[0].numpy(), data[1].numpy(), atol=1e-6)


def test_voxel_statistics_mean_and_std_with_masks():
    stats = VoxelStatistics((1, 2, 2))
    stats.add(np.full((1, 2, 2), 1.0))
    stats.add(np.full((1, 2, 2), 3.0), mask=np.array([[True, False], [True, True]]))
    np.testing.assert_allclose(stats.mean()[0], [[2.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(stats.std()[0], [[1.0, 0.0], [1.0, 1.0]])
