"""45-degree reformatting geometry and 9-orientation fusion (documentation/orientation_fusion.md)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from synthunet.inference.testing import ChannelNetwork
from synthunet.prediction.ensembling import VoxelStatistics
from synthunet.prediction.orientation_fusion import Orientation, orientations_for, predict_volume_25d
from synthunet.prediction.rotation import PlaneRotation
from synthunet.preprocessing.cropping import bounding_box

K = 3  # slices per stack


def blob(shape, centre, sigma) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    squared = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return np.exp(-squared / (2 * sigma ** 2)).astype(np.float32)


@pytest.mark.parametrize("shape", [(37, 44, 30), (33, 36, 34)])
@pytest.mark.parametrize("plane", [(0, 1), (0, 2), (1, 2)])
def test_round_trip_of_a_smooth_blob(shape, plane):
    centre = [n / 2 - 1.3 for n in shape]
    volume = 3.0 * blob(shape, centre, sigma=4.0)
    rotation = PlaneRotation(shape, plane)
    rotated = rotation.forward(volume)
    assert rotated.shape == rotation.padded_shape
    back = rotation.backward(rotated)
    assert back.shape == shape
    assert np.abs(back - volume).max() < 1e-3 * volume.max()


def test_padding_is_even_symmetric_and_reaches_the_diagonal():
    rotation = PlaneRotation((37, 44, 30), (0, 2))
    diagonal = np.hypot(37, 30)
    for axis in (0, 2):
        before, after = rotation.padding[axis]
        assert before == after
        assert rotation.padded_shape[axis] >= diagonal
    assert rotation.padding[1] == (0, 0)
    # the original array centre is the padded array centre
    for n, (before, _), padded in zip(rotation.shape, rotation.padding, rotation.padded_shape):
        assert (n - 1) / 2 + before == (padded - 1) / 2


def test_rotation_turns_by_45_degrees_about_the_centre():
    shape = (31, 31, 5)
    volume = blob(shape, (15 + 8, 15, 2), sigma=1.5)  # 8 voxels from the centre along axis 0
    rotation = PlaneRotation(shape, (0, 1))
    rotated = rotation.forward(volume)
    peak = np.unravel_index(np.argmax(rotated), rotated.shape)
    centre = [(n - 1) / 2 for n in rotation.padded_shape]
    offset = np.array(peak[:2]) - np.array(centre[:2])
    assert np.hypot(*offset) == pytest.approx(8, abs=0.8)
    assert abs(abs(offset[0]) - abs(offset[1])) <= 1.0  # on a diagonal
    assert peak[2] == 2


def test_nine_orientations_are_the_principal_axes_and_face_diagonals():
    normals = [o.normal() for o in orientations_for(9)]
    expected = [np.eye(3)[i] for i in range(3)]
    for i, j in itertools.combinations(range(3), 2):
        for sign in (1, -1):
            vector = np.eye(3)[i] + sign * np.eye(3)[j]
            expected.append(vector / np.linalg.norm(vector))
    for normal in normals:
        assert sum(abs(abs(float(np.dot(normal, e))) - 1) < 1e-9 for e in expected) == 1
    for a, b in itertools.combinations(normals, 2):
        assert abs(abs(float(np.dot(a, b))) - 1) > 1e-6  # all distinct planes
    assert orientations_for(1) == [Orientation(0)]
    assert len(orientations_for(3)) == 3
    with pytest.raises(ValueError):
        orientations_for(4)


def test_bounding_box_with_margin():
    mask = np.zeros((10, 10), bool)
    mask[3:5, 6] = True
    assert bounding_box(mask, 2) == (slice(1, 7), slice(4, 9))


@pytest.mark.parametrize("count", [1, 3])
def test_principal_orientations_are_exact(count):
    shape = (18, 23, 20)
    volume = blob(shape, (9, 11, 10), 4.0)
    data = np.stack([volume, 2 * volume])
    fused = predict_volume_25d(ChannelNetwork(K // 2), data, K, (16, 16), orientations=count, use_mirroring=False)
    np.testing.assert_allclose(fused[0], volume, atol=1e-6)


def test_nine_orientation_fusion_of_identity_returns_the_input():
    shape = (26, 31, 24)
    volume = 5.0 * blob(shape, (12.6, 15.2, 11.1), 4.0)
    data = np.stack([volume, 0.5 * volume])
    statistics = VoxelStatistics((1,) + shape)
    fused = predict_volume_25d(ChannelNetwork(K // 2), data, K, (16, 16), orientations=9, use_mirroring=False,
                               statistics=statistics)
    assert fused.shape == (1,) + shape and fused.dtype == np.float32
    assert statistics.samples == 9
    assert statistics.count.min() >= 3  # the unrotated orientations cover every voxel
    everywhere = statistics.count == 9
    assert everywhere.mean() > 0.6
    assert np.abs(fused[0] - volume)[everywhere].max() < 1e-3 * volume.max()
    assert np.abs(fused[0] - volume).max() < 1e-2 * volume.max()  # the rim is not diluted either


def test_fusion_is_linear_in_the_network():
    shape = (16, 18, 17)
    volume = blob(shape, (8, 9, 8), 4.0)
    data = torch.from_numpy(np.stack([volume]))
    fused = predict_volume_25d(ChannelNetwork(K // 2, scale=2.0), data, K, (16, 16), orientations=9,
                               use_mirroring=True)
    inside = np.zeros(shape, bool)
    inside[3:-3, 3:-3, 3:-3] = True
    assert np.abs(fused[0] - 2 * volume)[inside].max() < 2e-3
