"""The protocol augmentation (issue 16: thick slices, bias field, extra noise) against independent references:
scipy.ndimage.gaussian_filter1d for the slice blur, a NumPy log-linear field for the bias."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthunet.training.data import AugmentationParams, BatchAugmenter, draw_augmentation
from synthunet.training.data.augmentation import bias_field, slice_blur, without_intensity_augmentation
from test_batch_augmentation import NO_INTENSITY, batch_of, brain_like_seg, smooth_volume

PROTOCOL = dataclasses.replace(NO_INTENSITY, p_rotation=0, p_scale=0, mirror=False, p_slice_blur=1.0, p_bias=1.0,
                               p_protocol_noise=1.0)


@pytest.mark.parametrize("shape", [(10, 12, 9), (14, 11)])
def test_slice_blur_matches_scipy_gaussian_filter(shape):
    ndim = len(shape)
    x = np.random.RandomState(0).uniform(size=(3, 2, *shape)).astype(np.float32)
    sigma = np.zeros((3, ndim), np.float32)
    sigma[0, 0], sigma[1, ndim - 1] = 1.0, 1.5        # radii 3 and 5 with scipy's truncate=3 as with ours
    out = slice_blur(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()
    for b in range(3):
        expected = x[b].astype(np.float64)
        for axis in range(ndim):
            if sigma[b, axis] > 0:
                expected = ndimage.gaussian_filter1d(expected, float(sigma[b, axis]), axis=axis + 1, mode="nearest",
                                                     truncate=3.0)
        np.testing.assert_allclose(out[b], expected, atol=1e-5)
    assert np.array_equal(out[2], x[2])               # sigma 0: untouched


def test_bias_field_is_log_linear_across_the_patch():
    shape = (6, 7, 5)
    x = np.random.RandomState(1).uniform(0.5, 1.0, size=(2, 3, *shape)).astype(np.float32)
    gradient = np.array([[0.1, -0.05, 0.08], [0.0, 0.0, 0.0]], np.float32)
    out = bias_field(torch.from_numpy(x), torch.from_numpy(gradient)).numpy()
    u = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    expected = x[0] * np.exp(sum(g * ui for g, ui in zip(gradient[0], u)))[None]   # one field for every channel
    np.testing.assert_allclose(out[0], expected, rtol=1e-5)
    assert np.array_equal(out[1], x[1])


def test_slices_blur_inputs_and_target_alike_and_bias_touches_only_the_inputs():
    patch = (10, 10, 10)
    draws = draw_augmentation(PROTOCOL, 2, 3, 1, rng=np.random.RandomState(3))
    volume = smooth_volume(patch, 1, seed=5) + 0.5
    data = np.stack([np.concatenate([volume, volume]) for _ in range(2)])    # the input is a copy of the target
    seg = np.stack([np.zeros((1, *patch), np.int8)] * 2)
    blur_only = dict(draws, bias_gradient=np.zeros_like(draws["bias_gradient"]), noise_std=np.zeros(2, np.float32))
    out = BatchAugmenter(patch)(batch_of(data, seg, blur_only))
    assert torch.allclose(out["data"], out["target"], atol=1e-6)
    assert not torch.allclose(out["target"], torch.from_numpy(data[:, 1:]), atol=1e-3)
    bias_only = dict(draws, slice_sigma=np.zeros_like(draws["slice_sigma"]), noise_std=np.zeros(2, np.float32))
    out = BatchAugmenter(patch)(batch_of(data, seg, bias_only))
    assert torch.equal(out["target"], torch.from_numpy(data[:, 1:]))
    assert not torch.allclose(out["data"], out["target"], atol=1e-3)


def test_protocol_draws_follow_their_params_and_are_off_by_default():
    n = 400
    params = dataclasses.replace(PROTOCOL, p_slice_blur=0.3, p_bias=0.5, p_protocol_noise=0.25)
    draws = draw_augmentation(params, n, 3, 2, rng=np.random.RandomState(0))
    blurred = draws["slice_sigma"] > 0
    assert blurred.sum(axis=1).max() == 1                                     # one axis per sample
    assert abs(blurred.any(axis=1).mean() - 0.3) < 0.07
    widths = 2 * draws["slice_sigma"][blurred]
    assert widths.min() >= params.slice_width_voxels[0] and widths.max() <= params.slice_width_voxels[1]
    assert abs((draws["bias_gradient"] != 0).any(axis=1).mean() - 0.5) < 0.08
    assert np.abs(draws["bias_gradient"]).max() <= params.bias_log_gradient
    assert abs((draws["noise_std"] > 0).mean() - 0.25) < 0.07
    assert draws["noise_std"].max() <= params.protocol_noise_std[1]
    # off by default, and then the random stream is the one the other draws always had
    default = draw_augmentation(AugmentationParams(), 8, 3, 2, rng=np.random.RandomState(4))
    assert not default["slice_sigma"].any() and not default["bias_gradient"].any()
    protocol = draw_augmentation(dataclasses.replace(AugmentationParams(), p_bias=1e-9), 8, 3, 2,
                                 rng=np.random.RandomState(4))
    assert not np.array_equal(default["noise_seed"], protocol["noise_seed"])  # a non-zero p consumes draws
    again = draw_augmentation(AugmentationParams(), 8, 3, 2, rng=np.random.RandomState(4))
    assert all(np.array_equal(default[k], again[k]) for k in default)


def test_the_prior_keeps_the_protocol_augmentation():
    off = without_intensity_augmentation(dataclasses.replace(AugmentationParams(), p_slice_blur=0.3, p_bias=0.3,
                                                             p_protocol_noise=0.2))
    assert off.p_noise == off.p_gamma == off.p_brightness == off.p_contrast == 0
    assert (off.p_slice_blur, off.p_bias, off.p_protocol_noise) == (0.3, 0.3, 0.2)


def test_protocol_recipe_is_registered_with_its_augmentation():
    from synthunet.training.trainers import get_trainer_class

    params = get_trainer_class("SynthTrainer_ProtocolAug").augmentation
    assert params.p_slice_blur > 0 and params.p_bias > 0 and params.p_protocol_noise > 0
    assert get_trainer_class("SynthTrainer").augmentation.p_slice_blur == 0
