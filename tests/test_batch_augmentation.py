"""The batched augmentation (draws on the workers, work on the device) against independent references:
scipy.ndimage.affine_transform for the spatial part, batchgenerators' colour functions for contrast and
gamma, and the stated distributions of AugmentationParams for the draws."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from synthunet.training.data import (AugmentationParams, BatchAugmenter, CaseCache, PatchSampler, TrainingBatches,
                                     draw_augmentation, read_size)
from synthunet.training.data.augmentation import sampling_grid
from synthunet.training.data.cubic import CUBIC_MARGIN

NO_INTENSITY = AugmentationParams(p_noise=0, p_brightness=0, p_contrast=0, p_gamma=0)


def smooth_volume(shape, channels=1, seed=0) -> np.ndarray:
    """Random but smooth (so linear interpolation is well defined), values in about [0, 1]."""
    rng = np.random.RandomState(seed)
    volume = ndimage.gaussian_filter(rng.uniform(size=(channels, *shape)), sigma=(0, *[2] * len(shape)))
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)


def brain_like_seg(image: np.ndarray) -> np.ndarray:
    """-1 (outside) / 0 / 1 / 3 levels of an image channel, int8 (1, *S)."""
    seg = np.digitize(image[0], [0.3, 0.6, 0.8]) - 1
    return np.where(seg == 2, 3, seg).astype(np.int8)[None]


def batch_of(data: np.ndarray, seg: np.ndarray, draws: dict) -> dict:
    return {"data": torch.from_numpy(data.copy()), "seg": torch.from_numpy(seg.copy()), "case_ids": ["x"] * len(data),
            "augmentation": {k: torch.from_numpy(v) for k, v in draws.items()}}


def reference_resample(volume: np.ndarray, affine: np.ndarray, patch, order: int, cval: float) -> np.ndarray:
    """scipy's view of the same map: output p -> input (R - 1) / 2 + A (p - (P - 1) / 2)."""
    centre_in = (np.asarray(volume.shape) - 1) / 2
    centre_out = (np.asarray(patch) - 1) / 2
    return ndimage.affine_transform(volume.astype(np.float64), affine.astype(np.float64),
                                    offset=centre_in - affine @ centre_out, output_shape=tuple(patch), order=order,
                                    mode="grid-constant", cval=cval)


@pytest.mark.parametrize("interpolation, order", [("cubic", 3), ("linear", 1)])
@pytest.mark.parametrize("patch", [(12, 14, 10), (16, 15)])
def test_rotation_and_scaling_match_scipy_affine_transform(patch, interpolation, order):
    ndim = len(patch)
    params = dataclasses.replace(NO_INTENSITY, rotation_deg=25, p_rotation=1, p_scale=1, mirror=True)
    rng = np.random.RandomState(3)
    draws = draw_augmentation(params, 4, ndim, 1, rng=rng)
    region = read_size(draws["affine"], draws["elastic"], patch)
    assert all(r > p for r, p in zip(region, patch))
    volumes = np.stack([smooth_volume(region, 2, seed=b) for b in range(4)])   # input + target
    seg = np.stack([brain_like_seg(v) for v in volumes])
    out = BatchAugmenter(patch, interpolation=interpolation)(batch_of(volumes, seg, draws))
    for b in range(4):
        # scipy's spline prefilter sees the whole region (mirrored at its edge); ours zero-pads it, which the
        # margin that read_size adds keeps away from every sampled position
        expected = reference_resample(volumes[b, 0], draws["affine"][b], patch, order=order, cval=0)
        expected_seg = reference_resample(seg[b, 0], draws["affine"][b], patch, order=0, cval=-1)
        inside = expected_seg >= 0
        np.testing.assert_allclose(out["data"][b, 0].numpy()[inside], expected[inside], atol=1e-4)
        assert np.mean(out["seg"][b, 0].numpy() == expected_seg) > 0.995       # nearest: only rounding ties differ
        assert (out["data"][b, 0].numpy()[~inside] == 0).all() or not (~inside).any()


def test_cubic_keeps_small_bright_structures_that_linear_lowers():
    """Why cubic: a 2-voxel bright blob rotated by 10 degrees keeps its peak better (scipy's order 3 agrees)."""
    patch = (16, 16, 16)
    draws = draw_augmentation(NO_INTENSITY, 1, 3, 1, spatial=False)
    angle = np.deg2rad(10)
    draws["affine"] = np.array([[[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]],
                               dtype=np.float32)
    region = read_size(draws["affine"], draws["elastic"], patch)
    volume = np.zeros((1, 2, *region), dtype=np.float32)
    centre = [r // 2 for r in region]
    volume[0, :, centre[0] - 1:centre[0] + 1, centre[1] - 1:centre[1] + 1, centre[2] - 1:centre[2] + 1] = 1.0
    seg = np.zeros((1, 1, *region), dtype=np.int8)
    peaks = {mode: float(BatchAugmenter(patch, interpolation=mode)(batch_of(volume, seg, draws))["target"].max())
             for mode in ("cubic", "linear")}
    scipy_cubic = reference_resample(volume[0, 1], draws["affine"][0], patch, order=3, cval=0).max()
    assert peaks["cubic"] == pytest.approx(scipy_cubic, abs=1e-3) and peaks["cubic"] > peaks["linear"] + 0.02


def test_beyond_the_read_region_is_zero_and_outside_the_brain():
    """A region smaller than the drawn map needs: the missing part interpolates with 0 (scipy's grid-constant)."""
    patch = (10, 10, 10)
    angle = np.deg2rad(30)
    affine = np.eye(3, dtype=np.float32)
    affine[1:, 1:] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    draws = draw_augmentation(NO_INTENSITY, 1, 3, 1, spatial=False)
    draws["affine"] = affine[None]
    volume = smooth_volume(patch, 2) + 0.5
    seg = np.zeros((1, 1, *patch), dtype=np.int8)
    out = BatchAugmenter(patch)(batch_of(volume[None], seg, draws))
    expected_seg = reference_resample(seg[0, 0], affine, patch, order=0, cval=-1)
    assert (expected_seg < 0).any() and (out["seg"][0, 0].numpy() == expected_seg).mean() > 0.99
    assert (out["data"][0, 0].numpy()[out["seg"][0, 0].numpy() < 0] == 0).all()


def test_inputs_target_and_mask_get_the_identical_transform():
    patch = (9, 11, 10)
    params = dataclasses.replace(NO_INTENSITY, p_rotation=1, p_scale=1, p_elastic=1, elastic_voxels=2)
    draws = draw_augmentation(params, 3, 3, 2, rng=np.random.RandomState(7))
    region = read_size(draws["affine"], draws["elastic"], patch)
    image = np.stack([smooth_volume(region, 1, seed=b) for b in range(3)])
    data = np.concatenate([image, image, image], axis=1)             # two inputs and the target: the same image
    seg = np.stack([brain_like_seg(v) for v in image])
    out = BatchAugmenter(patch)(batch_of(data, seg, draws))
    assert out["data"].shape == (3, 2, *patch) and out["target"].shape == (3, 1, *patch)
    assert torch.equal(out["data"][:, :1], out["target"]) and torch.equal(out["data"][:, 1:], out["target"])
    # the mask moved with the image: its labels are still (nearly everywhere) the levels of the moved image
    inside = out["seg"] >= 0
    assert (out["target"][~inside] == 0).all() and (~inside).any() and inside.any()
    for b in range(3):
        levels = brain_like_seg(out["target"][b].numpy())
        assert np.mean(levels[inside[b].numpy()] == out["seg"][b].numpy()[inside[b].numpy()]) > 0.85


def test_identity_and_mirror_only_batches_are_exact_crops_and_flips():
    patch = (6, 7, 8)
    draws = draw_augmentation(NO_INTENSITY, 2, 3, 1, spatial=False)
    draws["affine"] = np.stack([np.diag([-1.0, 1.0, -1.0]), np.eye(3)]).astype(np.float32)
    assert read_size(draws["affine"], draws["elastic"], patch) == patch
    data = np.stack([smooth_volume(patch, 2, seed=b) for b in range(2)])
    seg = np.zeros((2, 1, *patch), dtype=np.int8)
    out = BatchAugmenter(patch)(batch_of(data, seg, draws))
    assert np.array_equal(out["data"][0, 0].numpy(), np.flip(data[0, 0], axis=(0, 2)))
    assert np.array_equal(out["target"][1, 0].numpy(), data[1, 1])
    # the same mirror inside a batch that needs the grid (one rotated sample): equal up to float rounding
    draws["affine"][1] = [[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]]
    region = read_size(draws["affine"], draws["elastic"], patch)
    big = np.stack([smooth_volume(region, 2, seed=b) for b in range(2)])
    out = BatchAugmenter(patch)(batch_of(big, np.zeros((2, 1, *region), dtype=np.int8), draws))
    crop = tuple(slice((r - p) // 2, (r - p) // 2 + p) for r, p in zip(region, patch))
    np.testing.assert_allclose(out["data"][0, 0].numpy(), np.flip(big[0, 0][crop], axis=(0, 2)), atol=1e-5)


def test_intensity_augmentation_never_touches_the_target():
    patch = (8, 8, 8)
    strong = AugmentationParams(p_noise=1, p_brightness=1, p_contrast=1, p_gamma=1, noise_variance=(0.01, 0.02))
    draws = draw_augmentation(strong, 3, 3, 2, rng=np.random.RandomState(1))
    region = read_size(draws["affine"], draws["elastic"], patch)
    data = np.stack([smooth_volume(region, 3, seed=b) for b in range(3)])
    seg = np.stack([brain_like_seg(v) for v in data])
    quiet = dict(draws, noise_std=np.zeros(3, np.float32),
                 **{k: np.ones_like(draws[k]) for k in ("brightness", "contrast", "gamma")})
    augmented = BatchAugmenter(patch, reference_channel=1)(batch_of(data, seg, draws))
    plain = BatchAugmenter(patch, reference_channel=1)(batch_of(data, seg, quiet))
    assert torch.equal(augmented["target"], plain["target"]) and torch.equal(augmented["seg"], plain["seg"])
    assert torch.equal(augmented["reference"], plain["data"][:, 1:2])  # the reference is taken before intensity
    assert not torch.allclose(augmented["data"], plain["data"], atol=1e-3)
    assert (augmented["data"][(augmented["seg"] < 0).expand_as(augmented["data"])] == 0).all()


@pytest.mark.parametrize("name", ["contrast", "gamma"])
def test_contrast_and_gamma_match_batchgenerators(name):
    """Factors above 1 are drawn deterministically by batchgenerators from a range (f, f)."""
    from batchgenerators.augmentations.color_augmentations import augment_contrast, augment_gamma

    factor = 1.3
    x = smooth_volume((10, 11, 12), 2, seed=4) * 0.8 + 0.1
    draws = draw_augmentation(NO_INTENSITY, 1, 3, 2, spatial=False)
    draws[name] = np.array([[factor, 1.0]], dtype=np.float32)    # channel 1 untouched
    out = BatchAugmenter(x.shape[1:], has_target=False)(batch_of(x[None], np.zeros((1, 1, *x.shape[1:]), np.int8),
                                                                 draws))["data"][0].numpy()
    if name == "contrast":
        expected = augment_contrast(x.astype(np.float64).copy(), contrast_range=(factor, factor), preserve_range=True,
                                    per_channel=True)
    else:
        expected = augment_gamma(x.astype(np.float64).copy(), gamma_range=(factor, factor), invert_image=False,
                                 per_channel=True, retain_stats=True)
    np.testing.assert_allclose(out[0], expected[0], atol=1e-5)
    np.testing.assert_array_equal(out[1], x[1])


def _within(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * np.sqrt(n * p * (1 - p)) + 1


def test_drawn_parameters_follow_augmentation_params():
    n = 4000
    params = AugmentationParams()
    draws = draw_augmentation(params, n, 2, 3, rng=np.random.RandomState(0))
    affine = draws["affine"].astype(np.float64)
    scale = np.sqrt(np.abs(np.linalg.det(affine)))
    rotated = ~np.isclose(np.abs(affine[:, 0, 1]), 0)
    scaled = ~np.isclose(scale, 1)
    assert _within(rotated.sum(), n, params.p_rotation) and _within(scaled.sum(), n, params.p_scale)
    assert scale.min() >= params.scale[0] - 1e-6 and scale.max() <= params.scale[1] + 1e-6
    assert _within((scale[scaled] < 1).sum(), scaled.sum(), 0.5)
    assert stats.kstest(scale[scaled & (scale < 1)], "uniform", args=(0.85, 0.15)).pvalue > 1e-3
    # in-plane angle: uniform in +-rotation_deg
    rotation_only = draw_augmentation(dataclasses.replace(params, p_rotation=1, p_scale=0, mirror=False), n, 2, 1,
                                      rng=np.random.RandomState(1))["affine"]
    angles = np.degrees(np.arctan2(rotation_only[:, 1, 0], rotation_only[:, 0, 0]))
    assert stats.kstest(angles, "uniform", args=(-15, 30)).pvalue > 1e-3
    mirrors = draw_augmentation(dataclasses.replace(params, p_rotation=0, p_scale=0), n, 3, 1,
                                rng=np.random.RandomState(2))["affine"]
    for axis in range(3):
        assert _within((mirrors[:, axis, axis] < 0).sum(), n, 0.5)
    assert not draws["elastic"].any()                                  # p_elastic = 0 by default
    # intensity: per-sample probabilities, per-channel factors in their ranges
    assert _within((draws["noise_std"] > 0).sum(), n, params.p_noise)
    variance = draws["noise_std"][draws["noise_std"] > 0].astype(np.float64) ** 2
    assert stats.kstest(variance, "uniform", args=(0, 0.001)).pvalue > 1e-3
    for name, p, (low, high) in (("brightness", params.p_brightness, params.brightness),
                                 ("contrast", params.p_contrast, params.contrast),
                                 ("gamma", params.p_gamma, params.gamma)):
        changed = (draws[name] != 1).any(axis=1)
        assert _within(changed.sum(), n, p), name
        assert draws[name].min() >= low - 1e-6 and draws[name].max() <= high + 1e-6, name
        assert len(np.unique(draws[name][changed][:, 0])) > 0.9 * changed.sum()  # per channel, not per batch
    brightness = draws["brightness"][(draws["brightness"] != 1).any(axis=1)].ravel().astype(np.float64)
    assert stats.kstest(brightness, "uniform", args=(0.75, 0.5)).pvalue > 1e-3
    off = draw_augmentation(params, 50, 3, 2, intensity=False, spatial=False)
    assert not off["noise_std"].any() and (off["gamma"] == 1).all() and (off["affine"] == np.eye(3)).all()


def test_read_size_holds_every_sampled_position():
    patch = (20, 24, 16)
    params = dataclasses.replace(AugmentationParams(), p_rotation=0.7, p_scale=0.7, p_elastic=0.5)
    for seed in range(20):
        draws = draw_augmentation(params, 2, 3, 1, rng=np.random.RandomState(seed))
        region = read_size(draws["affine"], draws["elastic"], patch)
        assert all((r - p) % 2 == 0 and r >= p for r, p in zip(region, patch))
        offsets = torch.stack(torch.meshgrid(*[torch.arange(p) - (p - 1) / 2 for p in patch], indexing="ij"), -1)
        grid = sampling_grid(torch.from_numpy(draws["affine"]), torch.from_numpy(draws["elastic"]), offsets, region)
        if not all(r == p for r, p in zip(region, patch)):  # interpolated: cubic's 4 voxels + the prefilter margin
            bound = torch.tensor([1 - 2 * (2 + CUBIC_MARGIN) / (r - 1) for r in reversed(region)])  # grid: x, y, z
            assert (grid.abs().amax(dim=(0, 1, 2, 3)) <= bound + 1e-5).all(), seed
        else:
            assert grid.abs().max() <= 1 + 1e-5, seed


def test_stream_reads_no_more_than_the_draws_need():
    data = smooth_volume((30, 30, 30), 2)
    seg = np.zeros((1, 30, 30, 30), dtype=np.int8)
    cache = CaseCache("unused", loader=lambda folder, case_id, mmap=True: (data, seg, {}))
    sampler = PatchSampler(cache, ["a"], [0], 1, (8, 8, 8), oversample_tumour=0)
    still = TrainingBatches(sampler, 2, augmentation_params=dataclasses.replace(NO_INTENSITY, p_rotation=0,
                                                                                 p_scale=0))
    assert still.next_batch()["data"].shape == (2, 2, 8, 8, 8)
    moving = TrainingBatches(sampler, 2, augmentation_params=dataclasses.replace(NO_INTENSITY, p_rotation=1),
                             dtype=torch.float16)
    batch = moving.next_batch()
    assert batch["data"].dtype == torch.float16 and batch["data"].shape[2] > 8
    np.random.seed(5)
    first = moving.next_batch()
    np.random.seed(5)
    again = moving.next_batch()
    assert torch.equal(first["data"], again["data"]) and all(
        torch.equal(first["augmentation"][k], again["augmentation"][k]) for k in first["augmentation"])
    out = BatchAugmenter((8, 8, 8))(first)
    assert out["data"].dtype == torch.float32 and out["data"].shape == (2, 1, 8, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augmentation_on_cuda_matches_cpu():
    patch = (16, 20, 12)
    params = dataclasses.replace(AugmentationParams(), p_rotation=1, p_scale=1, p_noise=0, p_brightness=1,
                                 p_contrast=1, p_gamma=1)
    draws = draw_augmentation(params, 2, 3, 2, rng=np.random.RandomState(0))
    region = read_size(draws["affine"], draws["elastic"], patch)
    data = np.stack([smooth_volume(region, 3, seed=b) for b in range(2)])
    seg = np.stack([brain_like_seg(v) for v in data])
    on_cpu = BatchAugmenter(patch)(batch_of(data, seg, draws))
    batch = batch_of(data, seg, draws)
    batch = {k: v.cuda() if torch.is_tensor(v) else {n: t.cuda() for n, t in v.items()} if isinstance(v, dict)
             else v for k, v in batch.items()}
    on_gpu = BatchAugmenter(patch)(batch)
    for key in ("data", "target"):
        np.testing.assert_allclose(on_gpu[key].cpu().numpy(), on_cpu[key].numpy(), atol=1e-4)
    assert (on_gpu["seg"].cpu() == on_cpu["seg"]).float().mean() > 0.999


def test_the_read_margin_makes_cubic_match_the_whole_volume():
    """The region read_size asks for is a crop of a larger volume; resampled, it must match scipy's cubic
    interpolation of the WHOLE volume (so the zero-padded prefilter never reaches a sampled position)."""
    patch = (10, 12, 10)
    params = dataclasses.replace(NO_INTENSITY, rotation_deg=20, p_rotation=1, p_scale=1)
    draws = draw_augmentation(params, 2, 3, 1, rng=np.random.RandomState(11))
    region = read_size(draws["affine"], draws["elastic"], patch)
    whole_shape = [r + 24 for r in region]
    whole = np.stack([smooth_volume(whole_shape, 1, seed=5)[0]] * 2)
    crop = tuple(slice(12, 12 + r) for r in region)
    data = np.stack([whole[(slice(None), *crop)]] * 2)
    out = BatchAugmenter(patch)(batch_of(data, np.zeros((2, 1, *region), dtype=np.int8), draws))
    for b in range(2):
        centre_in = (np.asarray(whole_shape) - 1) / 2          # the crop is centred in the whole volume
        affine = draws["affine"][b].astype(np.float64)
        expected = ndimage.affine_transform(whole[0].astype(np.float64), affine,
                                            offset=centre_in - affine @ ((np.asarray(patch) - 1) / 2),
                                            output_shape=patch, order=3, mode="mirror")
        np.testing.assert_allclose(out["data"][b, 0].numpy(), expected, atol=1e-4)
