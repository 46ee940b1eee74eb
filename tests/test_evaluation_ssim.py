"""The torch SSIM / PSNR against scikit-image (an independent implementation)."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from synthunet.evaluation.ssim import gaussian_window, psnr, ssim, ssim_map, window_radius

TOLERANCE = 1e-4


def skimage_ssim(a, b, data_range, full=False):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, full=full)


def random_pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    return a, a + 0.3 * rng.standard_normal(shape)


def structured_pair(shape, seed=0):
    """Smooth blobs (low-pass filtered noise, scaled to ~[0, 200]) and a noisy, slightly biased copy."""
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random(shape), sigma=2.5)
    blobs = 200 * (blobs - blobs.min()) / (blobs.max() - blobs.min())
    other = 0.9 * blobs + 5 + rng.normal(0, 4, shape)
    return blobs, other


def as_tensor(array):
    return torch.from_numpy(np.ascontiguousarray(array))[None, None]


def test_window_is_11_wide_and_normalised():
    weights = gaussian_window()
    assert window_radius() == 5 and weights.numel() == 11
    assert abs(float(weights.sum()) - 1) < 1e-12
    assert torch.allclose(weights, weights.flip(0))


@pytest.mark.parametrize("backend", ["torch", "scipy", "auto"])
@pytest.mark.parametrize("make_pair", [random_pair, structured_pair])
def test_3d_mean_and_map_match_skimage(make_pair, backend):
    a, b = make_pair((24, 28, 32))
    data_range = float(a.max() - a.min())
    expected_mean, expected_map = skimage_ssim(a, b, data_range, full=True)
    value = float(ssim(as_tensor(a), as_tensor(b), data_range, backend=backend))
    assert abs(value - expected_mean) < TOLERANCE
    full_map = ssim_map(as_tensor(a), as_tensor(b), data_range, backend=backend)[0, 0].numpy()
    assert full_map.shape == a.shape
    r = window_radius()
    interior = (slice(r, -r),) * 3
    assert np.abs(full_map[interior] - expected_map[interior]).max() < TOLERANCE
    # the border uses the same mirror extension as scikit-image, so the whole map agrees too
    assert np.abs(full_map - expected_map).max() < TOLERANCE
    # the full-image mean is the interior mean of the map (scikit-image crops the borders)
    assert abs(full_map[interior].mean() - value) < 1e-10


@pytest.mark.parametrize("make_pair", [random_pair, structured_pair])
def test_2d_matches_skimage(make_pair):
    a, b = make_pair((40, 36), seed=3)
    data_range = float(a.max() - a.min())
    expected_mean, expected_map = skimage_ssim(a, b, data_range, full=True)
    assert abs(float(ssim(as_tensor(a), as_tensor(b), data_range, backend="torch")) - expected_mean) < TOLERANCE
    result = ssim_map(torch.from_numpy(a), torch.from_numpy(b), data_range, spatial_dims=2)
    assert np.abs(result.numpy() - expected_map).max() < TOLERANCE


@pytest.mark.parametrize("make_pair", [random_pair, structured_pair])
def test_psnr_matches_skimage(make_pair):
    a, b = make_pair((20, 22, 24), seed=5)
    data_range = float(a.max() - a.min())
    expected = peak_signal_noise_ratio(a, b, data_range=data_range)
    assert abs(float(psnr(as_tensor(a), as_tensor(b), data_range)) - expected) < TOLERANCE


def test_identical_images_give_one_and_infinite_psnr():
    a, _ = structured_pair((16, 16, 16))
    assert abs(float(ssim(as_tensor(a), as_tensor(a), 200.0)) - 1) < 1e-12
    assert torch.isinf(psnr(as_tensor(a), as_tensor(a), 200.0))


def test_float32_batch_training_use_is_differentiable_and_close_to_float64():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 20, 20, 20)
    prediction = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    loss = 1 - ssim(prediction, target, data_range=1.0)
    loss.backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()
    assert prediction.grad.abs().sum() > 0
    reference = ssim(prediction.detach().double(), target.double(), 1.0, reduction="none")
    per_image = ssim(prediction.detach(), target, 1.0, reduction="none")
    assert per_image.shape == (2, 1)
    assert torch.allclose(per_image.double(), reference, atol=1e-5)
    for i in range(2):
        expected = skimage_ssim(prediction.detach()[i, 0].double().numpy(), target[i, 0].double().numpy(), 1.0)
        assert abs(float(reference[i, 0]) - expected) < TOLERANCE


def test_2d_batches_and_per_sample_data_range():
    torch.manual_seed(1)
    x = torch.rand(3, 2, 32, 32, dtype=torch.float64)
    y = x + 0.05 * torch.randn_like(x)
    ranges = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    values = ssim(x, y, ranges, reduction="none")
    for i in range(3):
        for c in range(2):
            expected = skimage_ssim(x[i, c].numpy(), y[i, c].numpy(), float(ranges[i]))
            assert abs(float(values[i, c]) - expected) < TOLERANCE


def test_masked_mean_is_mean_of_the_map_inside_the_mask():
    a, b = structured_pair((24, 24, 24), seed=2)
    mask = np.zeros(a.shape, dtype=bool)
    mask[3:15, 6:20, 2:10] = True
    _, expected_map = skimage_ssim(a, b, 200.0, full=True)
    value = float(ssim(as_tensor(a), as_tensor(b), 200.0, mask=as_tensor(mask)))
    assert abs(value - expected_map[mask].mean()) < TOLERANCE
    masked_psnr = float(psnr(as_tensor(a), as_tensor(b), 200.0, mask=as_tensor(mask)))
    assert abs(masked_psnr - peak_signal_noise_ratio(a[mask], b[mask], data_range=200.0)) < TOLERANCE


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 1, 12, 12, 12), torch.rand(1, 1, 12, 12, 13), 1.0)
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.rand(1, 1, 8, 12, 12), torch.rand(1, 1, 8, 12, 12), 1.0, backend="torch")
    with pytest.raises(ValueError, match="2 or 3 spatial"):
        ssim(torch.rand(1, 1, 12), torch.rand(1, 1, 12), 1.0)
