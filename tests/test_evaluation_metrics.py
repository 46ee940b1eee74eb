"""Region metrics (region and brasyn modes) on small hand-made volumes."""
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from synthunet.evaluation.metrics import (PSNR_CAP_DB, EvaluationError, brasyn_masked_ssim, brats_region_dice,
                                          default_brain_mask, dice, evaluate_case, percentile_normalise)

SHAPE = (28, 30, 32)


def phantom(seed=0):
    """A smooth ellipsoidal 'brain' (zero outside), a tumour with labels 2 (ED) around 1 (NCR) and 3 (ET)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = (z / 0.8) ** 2 + (y / 0.8) ** 2 + (x / 0.85) ** 2 < 1
    texture = ndimage.gaussian_filter(rng.random(SHAPE), 1.5)
    reference = np.where(brain, 100 + 400 * (texture - texture.min()) / np.ptp(texture), 0.0)
    labels = np.zeros(SHAPE, dtype=np.int16)
    distance = np.sqrt((z - 0.1) ** 2 + (y + 0.1) ** 2 + x ** 2)
    labels[(distance < 0.35) & brain] = 2
    labels[(distance < 0.2) & brain] = 1
    labels[(distance < 0.12) & brain] = 3
    return reference, brain, labels


def skimage_ssim(a, b, data_range, full=False):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, full=full)


def test_identical_images_are_perfect_in_every_region():
    reference, brain, labels = phantom()
    results = evaluate_case(reference, reference.copy(), brain, labels)
    assert set(results) == {"brain", "tumour", "healthy", "NCR", "ED", "ET"}
    for region, values in results.items():
        assert values["SSIM"] == pytest.approx(1.0, abs=1e-12), region
        assert values["MAE"] == 0 and values["MSE"] == 0
        assert values["PSNR"] == PSNR_CAP_DB  # infinite PSNR is capped
        assert values["NCC"] == pytest.approx(1.0)
    assert results["tumour"]["n_voxels"] == int((labels > 0).sum())
    assert results["healthy"]["n_voxels"] == int((brain & (labels == 0)).sum())


def test_region_metrics_match_independent_computation():
    reference, brain, labels = phantom()
    rng = np.random.default_rng(4)
    prediction = reference + rng.normal(0, 10, SHAPE) * brain
    results = evaluate_case(reference, prediction, brain, labels)
    brain_range = np.ptp(reference[brain])
    _, ssim_image = skimage_ssim(reference, prediction, brain_range, full=True)
    for region, mask in {"brain": brain, "tumour": labels > 0, "healthy": brain & (labels == 0),
                         "ET": labels == 3}.items():
        values = results[region]
        ref, pred = reference[mask], prediction[mask]
        assert values["MAE"] == pytest.approx(np.abs(ref - pred).mean(), rel=1e-10)
        assert values["PSNR"] == pytest.approx(peak_signal_noise_ratio(ref, pred, data_range=np.ptp(ref)), abs=1e-4)
        assert values["psnr_data_range"] == pytest.approx(np.ptp(ref))
        assert values["SSIM"] == pytest.approx(ssim_image[mask].mean(), abs=1e-4)
        assert values["ssim_data_range"] == pytest.approx(brain_range)
        assert values["NCC"] == pytest.approx(np.corrcoef(ref, pred)[0, 1], abs=1e-10)


def test_perturbing_the_tumour_changes_tumour_and_brain_but_not_healthy():
    reference, brain, labels = phantom()
    rng = np.random.default_rng(1)
    prediction = reference + rng.normal(0, 5, SHAPE) * brain
    perturbed = prediction.copy()
    tumour = labels > 0
    perturbed[tumour] += 80.0 + rng.normal(0, 20, int(tumour.sum()))
    before = evaluate_case(reference, prediction, brain, labels, data_range="brain")
    after = evaluate_case(reference, perturbed, brain, labels, data_range="brain")
    for metric in ("MAE", "MSE", "PSNR", "NCC"):
        assert after["healthy"][metric] == before["healthy"][metric], metric
        assert after["tumour"][metric] != before["tumour"][metric], metric
        assert after["brain"][metric] != before["brain"][metric], metric
    assert after["tumour"]["MAE"] > before["tumour"]["MAE"] + 70
    assert after["tumour"]["SSIM"] < before["tumour"]["SSIM"]
    assert after["brain"]["SSIM"] < before["brain"]["SSIM"]
    # region SSIM sees the window around each voxel: healthy voxels next to the tumour change a little,
    # much less than the tumour itself
    assert before["tumour"]["SSIM"] - after["tumour"]["SSIM"] > 5 * (before["healthy"]["SSIM"] - after["healthy"]["SSIM"])


def test_data_range_options():
    reference, brain, labels = phantom()
    prediction = reference * 1.05
    fixed = evaluate_case(reference, prediction, brain, labels, data_range=1000.0)
    for values in fixed.values():
        assert values["psnr_data_range"] == 1000.0 and values["ssim_data_range"] == 1000.0
    mse = fixed["brain"]["MSE"]
    assert fixed["brain"]["PSNR"] == pytest.approx(10 * math.log10(1000.0 ** 2 / mse))
    brain_range = evaluate_case(reference, prediction, brain, labels, data_range="brain")
    assert brain_range["tumour"]["psnr_data_range"] == pytest.approx(np.ptp(reference[brain]))
    with pytest.raises(EvaluationError, match="data_range"):
        evaluate_case(reference, prediction, brain, labels, data_range=-1)
    with pytest.raises(EvaluationError, match="region mode"):
        evaluate_case(reference, prediction, brain, labels, mode="brasyn", data_range="brain")


def test_without_labels_and_mask_the_brain_is_the_nonzero_reference():
    reference, brain, _ = phantom()
    reference_with_hole = reference.copy()
    reference_with_hole[14, 15, 16] = 0  # a zero voxel inside the brain is filled
    mask = default_brain_mask(reference_with_hole)
    assert mask[14, 15, 16] and np.array_equal(mask, brain)
    results = evaluate_case(reference_with_hole, reference_with_hole + 1)
    assert set(results) == {"brain"}
    assert results["brain"]["n_voxels"] == int(brain.sum())


def test_shape_mismatch_and_empty_brain_raise():
    reference, brain, labels = phantom()
    with pytest.raises(EvaluationError, match="differs"):
        evaluate_case(reference, reference[:-1])
    with pytest.raises(EvaluationError, match="labels shape"):
        evaluate_case(reference, reference, labels=labels[:, :-1])
    with pytest.raises(EvaluationError, match="empty"):
        evaluate_case(np.zeros(SHAPE), np.zeros(SHAPE))


def test_brasyn_percentile_normalisation_on_a_ramp():
    ramp = np.arange(1000, dtype=np.float64).reshape(10, 10, 10)
    # numpy's linear percentiles of 0..999: 0.5 % -> 4.995, 99.5 % -> 994.005
    normalised = percentile_normalise(ramp)
    low, high = 4.995, 994.005
    assert normalised.min() == 0 and normalised.max() == 1
    assert normalised.flat[0] == 0 and normalised.flat[4] == 0  # clipped below 4.995
    assert normalised.flat[500] == pytest.approx((500 - low) / (high - low))
    assert normalised.flat[995] == 1  # clipped above 994.005
    # a negative lower percentile is raised to 0
    shifted = percentile_normalise(ramp - 100)  # percentiles -95.005 and 894.005
    assert shifted.flat[100] == 0 and shifted.flat[50] == 0
    assert shifted.flat[500] == pytest.approx(400 / 894.005)
    assert not percentile_normalise(np.full((4, 4), 7.0)).any()


def test_brasyn_mode_reproduces_the_organisers_recipe():
    reference, brain, labels = phantom()
    rng = np.random.default_rng(2)
    prediction = 3.0 * reference + rng.normal(0, 30, SHAPE) * brain  # a different scale: each volume is rescaled
    results = evaluate_case(reference, prediction, brain, labels, mode="brasyn")
    assert set(results) == {"tumour", "healthy"}
    ref_n, pred_n = percentile_normalise(reference), percentile_normalise(prediction)
    for region, mask in (("tumour", labels > 0), ("healthy", labels == 0)):
        masked_ref, masked_pred = ref_n * mask, pred_n * mask
        data_range = max(np.ptp(masked_ref), np.ptp(masked_pred))  # torchmetrics' inferred range
        assert results[region]["SSIM"] == pytest.approx(skimage_ssim(masked_ref, masked_pred, data_range), abs=1e-4)
        assert results[region]["ssim_data_range"] == pytest.approx(data_range)
        assert results[region]["PSNR"] == pytest.approx(
            peak_signal_noise_ratio(ref_n[mask], pred_n[mask], data_range=1.0), abs=1e-4)
        assert results[region]["n_voxels"] == int(mask.sum())
    # healthy = every non-tumour voxel, background included
    assert results["healthy"]["n_voxels"] == int((labels == 0).sum()) > int((brain & (labels == 0)).sum())
    fixed = evaluate_case(reference, prediction, brain, labels, mode="brasyn", data_range=1.0)
    assert fixed["tumour"]["ssim_data_range"] == 1.0


def test_brasyn_ssim_of_an_empty_mask_is_one():
    volume = np.random.default_rng(0).random((16, 16, 16))
    assert brasyn_masked_ssim(volume, volume, np.zeros(volume.shape, bool))[0] == 1.0


def test_dice_and_brats_regions():
    assert dice(np.zeros(5, bool), np.zeros(5, bool)) == 1.0
    assert dice(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == 0.5
    reference = np.array([0, 1, 2, 3, 3, 2])
    predicted = np.array([0, 1, 2, 2, 3, 0])
    scores = brats_region_dice(reference, predicted)
    assert scores["WT"] == pytest.approx(2 * 4 / (5 + 4))
    assert scores["TC"] == pytest.approx(2 * 2 / (3 + 2))
    assert scores["ET"] == pytest.approx(2 * 1 / (2 + 1))
