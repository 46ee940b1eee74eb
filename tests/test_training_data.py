"""Patch sampling, 2.5D stacks, padding, tumour oversampling and background loading of the training data
(the augmentation is tested in test_batch_augmentation.py)."""
from __future__ import annotations

import numpy as np
import pytest

from synthunet.training.data import (CaseCache, PatchSampler, PatchSpec, TrainingBatches, ValidationPatches,
                                     WaitTimer, read_region, training_iterator)

SHAPE = (7, 9, 8)
N_CHANNELS = 3


def coordinate_volume() -> tuple[np.ndarray, np.ndarray]:
    """data[c, z, y, x] = c * 1e6 + (z + 1) * 1e4 + (y + 1) * 1e2 + (x + 1) (exact in float32); seg = z - 1."""
    c, z, y, x = np.meshgrid(*[np.arange(n) for n in (N_CHANNELS, *SHAPE)], indexing="ij")
    data = (c * 1e6 + (z + 1) * 1e4 + (y + 1) * 1e2 + (x + 1)).astype(np.float32)
    seg = (np.arange(SHAPE[0])[:, None, None] - 1 + np.zeros(SHAPE, dtype=int)).astype(np.int8)[None]
    return data, seg


class RecordingArray:
    """An array-like that records every index it is read with (to check that only the patch is read)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.reads = array, []

    @property
    def shape(self):
        return self.array.shape

    def __getitem__(self, index):
        self.reads.append(index)
        return self.array[index]


def make_cache(cases: dict) -> CaseCache:
    return CaseCache("unused", loader=lambda folder, case_id, mmap=True: cases[case_id])


def value_at(data: np.ndarray, channel: int, position) -> float:
    if all(0 <= p < s for p, s in zip(position, SHAPE)):
        return float(data[(channel, *position)])
    return 0.0


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("center", [(0, 0, 0), (3, 4, 4), (6, 8, 7)])
def test_25d_stack_layout_and_zero_slices_beyond_the_edge(axis, center):
    data, seg = coordinate_volume()
    inputs, target, k, size = [2, 0], 1, 3, (6, 6)
    sampler = PatchSampler(make_cache({"a": (data, seg, {})}), ["a"], inputs, target, size, num_slices=k,
                           slicing_axes=[axis], oversample_tumour=0)
    stack, seg_slice = sampler.extract(PatchSpec("a", center, axis))
    assert stack.shape == (len(inputs) * k + 1, *size) and seg_slice.shape == (1, *size)
    in_plane = [a for a in range(3) if a != axis]
    for u in range(size[0]):
        for v in range(size[1]):
            position = [0, 0, 0]
            position[in_plane[0]] = center[in_plane[0]] - size[0] // 2 + u
            position[in_plane[1]] = center[in_plane[1]] - size[1] // 2 + v
            for i, channel in enumerate(inputs):
                for j in range(k):
                    position[axis] = center[axis] + j - k // 2
                    assert stack[i * k + j, u, v] == value_at(data, channel, position)
            position[axis] = center[axis]
            assert stack[-1, u, v] == value_at(data, target, position)  # the target's central slice
            inside = all(0 <= p < s for p, s in zip(position, SHAPE))
            assert seg_slice[0, u, v] == (seg[(0, *position)] if inside else -1)


def test_3d_patch_padding_and_partial_reads():
    data, seg = coordinate_volume()
    recorder = RecordingArray(data)
    sampler = PatchSampler(make_cache({"a": (recorder, seg, {})}), ["a"], [0, 2], 1, (4, 4, 4), oversample_tumour=0)
    patch, seg_patch = sampler.extract(PatchSpec("a", (0, 8, 3)))
    assert patch.shape == (3, 4, 4, 4) and seg_patch.shape == (1, 4, 4, 4)
    # lower corner (-2, 6, 1): z -2, -1 and y 9 are outside -> zeros / -1
    assert (patch[:, :2] == 0).all() and (patch[:, :, 3] == 0).all() and (seg_patch[:, :2] == -1).all()
    assert patch[0, 2, 0, 0] == value_at(data, 0, (0, 6, 1)) and patch[2, 3, 2, 3] == value_at(data, 1, (1, 8, 4))
    for index in recorder.reads:  # one integer channel and only the part of the patch inside the volume
        assert isinstance(index[0], int) and index[1:] == (slice(0, 2), slice(6, 9), slice(1, 5))


def test_region_entirely_outside_is_padding():
    data, _ = coordinate_volume()
    out = read_region(data, [0], (20, 0, 0), (2, 2, 2), fill=0.0)
    assert out.shape == (1, 2, 2, 2) and not out.any()


def test_tumour_oversampling_centres_on_tumour_voxels():
    data, _ = coordinate_volume()
    seg = np.zeros((1, *SHAPE), dtype=np.int8)
    seg[0, 5, 6, 2] = 3
    sampler = PatchSampler(make_cache({"a": (data, seg, {})}), ["a"], [0], 1, (4, 4, 4), oversample_tumour=1.0)
    assert {sampler.random_spec().center for _ in range(5)} == {(5, 6, 2)}
    sampler.oversample_tumour = 0.0
    assert len({sampler.random_spec().center for _ in range(30)}) > 5
    none = PatchSampler(make_cache({"b": (data, np.zeros_like(seg), {})}), ["b"], [0], 1, (4, 4, 4),
                        oversample_tumour=1.0)
    assert none.random_spec().case_id == "b"  # no tumour: falls back to a random centre
    stored = PatchSampler(make_cache({"c": (data, seg, {"class_locations": {"1": [[1, 2, 3]], "2": []}})}), ["c"],
                          [0], 1, (4, 4, 4), oversample_tumour=1.0)
    assert stored.random_spec().center == (1, 2, 3)  # preprocessing's class_locations are used when present


def test_validation_patches_are_fixed_and_worker_loader_runs():
    data, seg = coordinate_volume()
    data = (data % 1000 / 1000).astype(np.float32)
    sampler = PatchSampler(make_cache({"a": (data, seg, {})}), ["a"], [0, 2], 1, (4, 4, 4))
    first = ValidationPatches(sampler, 2, 3, seed=5)
    assert first.specs == ValidationPatches(sampler, 2, 3, seed=5).specs and len(first) == 3
    assert [b["data"].shape for b in first] == [(2, 2, 4, 4, 4)] * 3
    stream = TrainingBatches(sampler, batch_size=2, spatial=False)
    iterator, timer = training_iterator(stream, num_workers=1), WaitTimer()
    for _ in range(3):
        batch = timer.fetch(iterator)
        timer.step_done()
    # workers send the un-augmented samples (inputs + target) and the draws; the trainer augments on its device
    assert batch["data"].shape == (2, 3, 4, 4, 4) and batch["augmentation"]["affine"].shape == (2, 3, 3)
    assert 0 < timer.fraction <= 1
