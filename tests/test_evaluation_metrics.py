"""Region metrics (region and brasyn modes, percentile and no normalisation) on small hand-made volumes."""
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from synthunet.evaluation.metrics import (METRICS, PSNR_CAP_DB, EvaluationError, brasyn_masked_ssim,
                                          brats_region_dice, default_brain_mask, dice, evaluate_case,
                                          percentile_normalise)

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
    results = evaluate_case(reference, prediction, brain, labels, normalisation="none")
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
    before = evaluate_case(reference, prediction, brain, labels, data_range="brain", normalisation="none")
    after = evaluate_case(reference, perturbed, brain, labels, data_range="brain", normalisation="none")
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
    fixed = evaluate_case(reference, prediction, brain, labels, data_range=1000.0, normalisation="none")
    for values in fixed.values():
        assert values["psnr_data_range"] == 1000.0 and values["ssim_data_range"] == 1000.0
    mse = fixed["brain"]["MSE"]
    assert fixed["brain"]["PSNR"] == pytest.approx(10 * math.log10(1000.0 ** 2 / mse))
    brain_range = evaluate_case(reference, prediction, brain, labels, data_range="brain", normalisation="none")
    assert brain_range["tumour"]["psnr_data_range"] == pytest.approx(np.ptp(reference[brain]))
    # after the (default) percentile rescaling (no clipping) the brain's range is ptp / (P99.5 - P0.5)
    normalised = evaluate_case(reference, prediction, brain, labels, data_range="brain")
    low, high = np.percentile(reference[brain], (0.5, 99.5))
    expected = np.ptp(reference[brain]) / (high - max(low, 0.0))
    assert normalised["tumour"]["psnr_data_range"] == pytest.approx(expected)
    assert normalised["tumour"]["ssim_data_range"] == pytest.approx(expected)
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


# --------------------------------------------------------------------------------- region-mode normalisation


@pytest.mark.parametrize("gain", [37.0, 0.02])
def test_percentile_normalisation_removes_a_global_gain(gain):
    """A prediction that is right up to a scanner gain is perfect after the percentile normalisation only."""
    reference, brain, labels = phantom()
    prediction = reference * gain
    normalised = evaluate_case(reference, prediction, brain, labels)  # default: normalisation="percentile"
    assert set(normalised) == {"brain", "tumour", "healthy", "NCR", "ED", "ET"}
    for region, values in normalised.items():
        assert values["SSIM"] == pytest.approx(1.0, abs=1e-9), region
        assert values["MAE"] == pytest.approx(0.0, abs=1e-9), region
        assert values["PSNR"] > 80, region  # identical up to rounding; the cap is 100 dB
        assert values["NCC"] == pytest.approx(1.0), region
    low, high = np.percentile(reference[brain], (0.5, 99.5))
    assert normalised["brain"]["ssim_data_range"] == pytest.approx(np.ptp(reference[brain]) / (high - max(low, 0)))
    as_given = evaluate_case(reference, prediction, brain, labels, normalisation="none")
    for region, values in as_given.items():
        assert values["SSIM"] < 0.9, region
        assert values["MAE"] > 0.5 * abs(gain - 1) * reference[brain].min(), region
        assert values["NCC"] == pytest.approx(1.0), region  # correlation ignores a gain in both modes
    # the default is the percentile normalisation
    explicit = evaluate_case(reference, prediction, brain, labels, normalisation="percentile")
    assert explicit == normalised


def test_percentile_normalisation_matches_an_independent_computation():
    reference, brain, labels = phantom()
    rng = np.random.default_rng(5)
    prediction = 2.5 * reference + rng.normal(0, 25, SHAPE) * brain
    results = evaluate_case(reference, prediction, brain, labels)

    def normalise(volume):
        low, high = np.percentile(volume[brain], [0.5, 99.5])
        low = max(low, 0.0)
        return (volume - low) / (high - low)  # region mode rescales without clipping

    ref_n, pred_n = normalise(reference), normalise(prediction)
    _, ssim_image = skimage_ssim(ref_n, pred_n, np.ptp(ref_n[brain]), full=True)
    for region, mask in {"brain": brain, "tumour": labels > 0, "healthy": brain & (labels == 0)}.items():
        ref, pred = ref_n[mask], pred_n[mask]
        assert results[region]["MAE"] == pytest.approx(np.abs(ref - pred).mean(), rel=1e-10)
        assert results[region]["psnr_data_range"] == pytest.approx(np.ptp(ref))
        assert results[region]["PSNR"] == pytest.approx(peak_signal_noise_ratio(ref, pred, data_range=np.ptp(ref)),
                                                        abs=1e-4)
        assert results[region]["SSIM"] == pytest.approx(ssim_image[mask].mean(), abs=1e-4)
        assert results[region]["NCC"] == pytest.approx(np.corrcoef(ref, pred)[0, 1], abs=1e-10)


def test_percentile_normalisation_inside_a_mask_on_a_ramp():
    """Bounds from the voxels inside the mask only; the voxels outside are clipped with the same bounds."""
    volume = np.full((12, 12, 12), 5000.0)  # bright outside: would set the whole-volume 99.5 % percentile
    volume[:2, :2, :2] = -3000.0  # and a dark outlier corner outside the mask
    mask = np.zeros(volume.shape, dtype=bool)
    mask[1:11, 1:11, 1:11] = True
    volume[mask] = np.arange(1000, dtype=np.float64)  # ramp 0..999 inside (C order)
    # numpy's linear percentiles of 0..999: 0.5 % -> 4.995, 99.5 % -> 994.005
    low, high = 4.995, 994.005
    normalised = percentile_normalise(volume, (0.5, 99.5), mask=mask)
    inside = normalised[mask]
    assert inside[0] == 0 and inside[4] == 0  # clipped below 4.995
    assert inside[5] == pytest.approx((5 - low) / (high - low))
    assert inside[500] == pytest.approx((500 - low) / (high - low))
    assert inside[994] == pytest.approx((994 - low) / (high - low)) and inside[995] == 1  # clipped above
    assert inside.mean() == pytest.approx(0.5)  # the clipped ramp is symmetric about 499.5
    assert (normalised[~mask & (volume == 5000)] == 1).all() and (normalised[volume == -3000] == 0).all()
    # a negative lower percentile inside the mask is raised to 0
    shifted = volume.copy()
    shifted[mask] -= 100  # percentiles -95.005 and 894.005 -> bounds 0 and 894.005
    inside = percentile_normalise(shifted, (0.5, 99.5), mask=mask)[mask]
    assert inside[100] == 0 and inside[50] == 0 and inside[500] == pytest.approx(400 / 894.005)
    # in evaluate_case: what lies outside the brain does not change the bounds, so a prediction equal inside
    # the brain and different outside scores MAE 0 and PSNR at the cap in the brain
    prediction = volume.copy()
    prediction[~mask] = 0.0
    results = evaluate_case(volume, prediction, brain_mask=mask)
    assert results["brain"]["MAE"] == 0 and results["brain"]["PSNR"] == PSNR_CAP_DB
    # region mode rescales without clipping: the ramp 0..999 spans 999 / (994.005 - 4.995)
    assert results["brain"]["psnr_data_range"] == pytest.approx(999 / (high - low))
    assert results["brain"]["ssim_data_range"] == pytest.approx(999 / (high - low))
    # a constant prediction becomes 0; the MAE is then the mean |rescaled reference|:
    # (sum_{v<5} (4.995 - v) + sum_{v>=5} (v - 4.995)) / 1000 / (994.005 - 4.995) (hand-computed)
    constant = np.where(mask, 300.0, 0.0)
    expected_mae = (14.975 + 494519.975) / 1000 / (high - low)
    assert evaluate_case(volume, constant, brain_mask=mask)["brain"]["MAE"] == pytest.approx(expected_mae)
    with pytest.raises(EvaluationError, match="empty"):
        percentile_normalise(volume, mask=np.zeros(volume.shape, bool))


def test_normalisation_option_is_checked():
    reference, brain, labels = phantom()
    with pytest.raises(EvaluationError, match="normalisation must be one of"):
        evaluate_case(reference, reference, brain, labels, normalisation="zscore")
    # brasyn mode keeps the organisers' own normalisation
    with pytest.raises(EvaluationError, match="only valid in region mode"):
        evaluate_case(reference, reference, brain, labels, mode="brasyn", normalisation="none")
    brasyn = evaluate_case(reference, 3 * reference, brain, labels, mode="brasyn", normalisation="percentile")
    assert brasyn == evaluate_case(reference, 3 * reference, brain, labels, mode="brasyn")
    assert set(brasyn["tumour"]) == {"n_voxels", *METRICS, "psnr_data_range", "ssim_data_range"}


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
