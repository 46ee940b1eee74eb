"""Nyúl standardisation: numerical equivalence with intensity-normalization 3.x and TorchIO, inversion."""
from __future__ import annotations

import numpy as np
import pytest

from synthunet.preprocessing.nyul import (DEFAULT_PERCENTILES, NormalizationError, apply_nyul, denormalize_target,
                                          invert_nyul, learn_standard_scale, normalization_plans_entry,
                                          normalize_case, nyul_landmarks, piecewise_linear)
from synthetic_raw import ellipsoid, smooth_brain_image

SHAPE = (24, 26, 22)
TOLERANCE = 1e-4  # on the preprocessed scale (standard scale / 100), i.e. float32 precision


def _population(n: int = 4, seed: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Continuous positive brains (no tied values), zero outside; distinct gain and shape per case."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for index in range(n):
        mask = ellipsoid(SHAPE, centre=(0.05 * index, 0.0, -0.03 * index))
        image = smooth_brain_image(SHAPE, mask, rng, scale=300.0 + 150.0 * index)
        image[mask] = image[mask] ** (1.0 + 0.05 * index) / 10.0  # a non-linear, case-specific intensity scale
        images.append(image.astype(np.float32))
        masks.append(mask)
    return images, masks


def test_against_intensity_normalization():
    from intensity_normalization.adapters.images import NumpyImageAdapter
    from intensity_normalization.normalizers.population.nyul import NyulNormalizer

    images, masks = _population()
    reference = NyulNormalizer(output_min_value=0, output_max_value=100)
    reference.fit_population([NumpyImageAdapter(i) for i in images],
                             [NumpyImageAdapter(m.astype(np.float32)) for m in masks])
    np.testing.assert_array_equal(reference.percentiles, DEFAULT_PERCENTILES)
    landmarks = [nyul_landmarks(i, m) for i, m in zip(images, masks)]
    scale = learn_standard_scale(landmarks, (0, 100))
    np.testing.assert_allclose(scale / 100, reference.standard_scale / 100, atol=TOLERANCE, rtol=0)
    for image, mask, own in zip(images, masks, landmarks):
        expected = reference.transform(NumpyImageAdapter(image), NumpyImageAdapter(mask.astype(np.float32))).get_data()
        ours = apply_nyul(image, None, own, scale)  # every voxel, so the extrapolation rule is compared too
        assert (image < own[0]).any() and (image[mask] > own[-1]).any()  # both extrapolated ranges occur
        np.testing.assert_allclose(ours / 100, expected / 100, atol=TOLERANCE, rtol=0)


def test_against_torchio(tmp_path):
    import nibabel as nib
    import torchio as tio

    images, masks = _population(seed=5)
    paths = []
    for index, image in enumerate(images):
        path = tmp_path / f"image_{index}.nii.gz"
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(path))
        paths.append(path)
    brain = lambda tensor: tensor > 0  # noqa: E731 - the brains are exactly the positive voxels
    mapping = tio.HistogramStandardization.train(paths, masking_function=brain, progress=False)
    # TorchIO learns 13 landmarks (1, 10, 20, 25, 30, ..., 70, 75, 80, 90, 99) and applies the 11 without 25/75
    shared = [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12]
    landmarks = [nyul_landmarks(i, m) for i, m in zip(images, masks)]
    scale = learn_standard_scale(landmarks)
    np.testing.assert_allclose(scale / 100, mapping[shared] / 100, atol=TOLERANCE, rtol=0)
    transform = tio.HistogramStandardization({"image": mapping}, masking_method=brain)
    for path in paths:
        subject = transform(tio.Subject(image=tio.ScalarImage(path)))
        expected = subject.image.data.numpy()[0]
        original = tio.ScalarImage(path).data.numpy()[0]  # TorchIO's own axis order
        ours = apply_nyul(original, None, nyul_landmarks(original, original > 0), scale)
        np.testing.assert_allclose(ours / 100, expected / 100, atol=TOLERANCE, rtol=0)


def test_extrapolation_is_linear_beyond_outer_landmarks():
    xp = np.array([10.0, 20.0, 40.0])
    fp = np.array([0.0, 50.0, 100.0])
    values = np.array([0.0, 5.0, 10.0, 30.0, 40.0, 60.0])
    np.testing.assert_allclose(piecewise_linear(values, xp, fp), [-50, -25, 0, 75, 100, 150])
    assert not np.allclose(piecewise_linear(values, xp, fp), np.interp(values, xp, fp))


def test_inversion_round_trip_and_clamping():
    images, masks = _population()
    landmarks = [nyul_landmarks(i, m) for i, m in zip(images, masks)]
    scale = learn_standard_scale(landmarks)
    reference = np.mean(landmarks, axis=0)
    image = images[0]
    standardised = apply_nyul(image, None, reference, scale)
    back = invert_nyul(standardised, scale, reference, clamp_min=None)
    np.testing.assert_allclose(back, image, rtol=1e-4, atol=1e-3)
    assert invert_nyul(np.array([-1e6]), scale, reference)[0] == 0


def _fingerprint_like(images, masks, channel="T1N"):
    percentiles = [0.5, 1, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 99, 99.5]
    return {"channel_names": {"0": channel}, "landmark_percentiles": percentiles,
            "landmarks": {channel: {f"c{i}": nyul_landmarks(im, m, percentiles).tolist()
                                    for i, (im, m) in enumerate(zip(images, masks))}}}


def test_plans_entry_normalize_and_denormalize():
    images, masks = _population()
    block = normalization_plans_entry(_fingerprint_like(images, masks))
    assert set(block) == {"scheme", "landmark_percentiles", "standard_scale_range", "range_divisor",
                          "standard_scales", "reference_landmarks"}
    assert block["landmark_percentiles"] == list(DEFAULT_PERCENTILES)
    scale = block["standard_scales"]["T1N"]
    assert scale[0] == pytest.approx(0) and scale[-1] == pytest.approx(100) and len(scale) == 11
    normalised = normalize_case(images[1][None], masks[1], block, ["T1N"])
    assert normalised.dtype == np.float32 and np.all(normalised[0][~masks[1]] == 0)
    inside = normalised[0][masks[1]]
    assert np.percentile(inside, 1) == pytest.approx(0, abs=1e-4)
    assert np.percentile(inside, 99) == pytest.approx(1, abs=1e-4)
    restored = denormalize_target(normalised[0], block, "T1N")
    assert restored.min() >= 0
    reference = np.asarray(block["reference_landmarks"]["T1N"])
    np.testing.assert_allclose(np.percentile(restored[masks[1]], DEFAULT_PERCENTILES), reference, rtol=1e-3)
    with pytest.raises(NormalizationError, match="not in the fingerprint"):
        normalization_plans_entry(_fingerprint_like(images, masks), percentiles=[2, 50, 98])
