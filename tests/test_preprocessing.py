"""Preprocessing of a tiny raw dataset: outputs, seg encoding, resumability, patch loading, inference round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from synthunet.dataset.image_io import Geometry, read_geometry, write_image
from synthunet.fingerprint import compute_fingerprint
from synthunet.preprocessing import (load_case, normalization_plans_entry, preprocess_case_for_inference,
                                     preprocess_dataset, revert_preprocessing)
from synthunet.preprocessing.cli import main as preprocess_main
from synthunet.preprocessing.resampling import compute_new_shape
from synthunet.preprocessing.storage import open_array, save_array
from synthetic_raw import OBLIQUE_DIRECTION, ellipsoid, make_tiny_raw_dataset

CHANNELS = ["T1N", "T1C", "T2W", "T2F"]
IDENTIFIER = "synthUNetPlans_3d_fullres"


def minimal_plans(fingerprint: dict, spacing=(1.5, 1.5, 1.5), order_z: int | None = None) -> dict:
    """The keys of plans.json that preprocessing reads (documentation/plans_format.md)."""
    resampling = {"order_data": 3, "order_seg": 0, "separate_z_anisotropy_threshold": 3.0}
    if order_z is not None:
        resampling["order_z_data"] = order_z
    configuration = {"data_identifier": IDENTIFIER, "spacing": list(spacing), "resampling": resampling}
    return {"dataset_name": fingerprint["dataset_name"], "plans_name": "synthUNetPlans",
            "channel_names": fingerprint["channel_names"], "label_values": fingerprint["label_values"],
            "normalization": normalization_plans_entry(fingerprint),
            "configurations": {"3d_fullres": {"dimension": 3, **configuration},
                               "2.5d": {"dimension": 2, "num_slices": 3, **configuration}}}


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    raw = make_tiny_raw_dataset(tmp_path / "raw" / "Dataset988_Tiny", n_cases=3, shape=(20, 22, 18))
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("synthUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    fingerprint = compute_fingerprint(raw, num_processes=1, progress=False)
    plans = minimal_plans(fingerprint)
    folder = tmp_path / "preprocessed" / raw.name
    folder.mkdir(parents=True)
    (folder / "synthUNetPlans.json").write_text(json.dumps(plans))
    return raw, folder, fingerprint, plans


def test_outputs_shapes_dtypes_and_seg_encoding(dataset):
    raw, folder, fingerprint, plans = dataset
    summary = preprocess_dataset(988, num_processes=1, progress=False)
    assert summary == {IDENTIFIER: {"processed": 3, "skipped": 0}}  # both configurations share one folder
    output = folder / IDENTIFIER
    for case_id, entry in fingerprint["cases"].items():
        data, seg, properties = load_case(output, case_id, mmap=False)
        expected_shape = compute_new_shape(entry["shape_after_cropping"], entry["spacing"], [1.5] * 3)
        assert data.shape == (4,) + expected_shape and data.dtype == np.float32
        assert seg.shape == (1,) + expected_shape and seg.dtype == np.int8
        assert set(np.unique(seg)) <= {-1, 0, 1, 2, 3} and (seg == -1).any() and (seg > 0).any()
        assert np.all(data[:, seg[0] == -1] == 0)
        inside = data[:, seg[0] >= 0]
        assert np.all(np.abs(np.median(inside, axis=1) - 0.5) < 0.3)  # bulk in [0, 1]
        assert np.all(np.percentile(inside, 99, axis=1) < 1.2)
        assert properties["bbox"] == entry["bbox"] and properties["channel_names"] == CHANNELS
        assert properties["shape_after_resampling"] == list(expected_shape)
        assert Geometry.from_dict(properties["geometry"]).shape == tuple(entry["shape_before_cropping"])
        assert set(properties["class_locations"]) == {"1", "2", "3"}
        for value, locations in properties["class_locations"].items():
            assert all(seg[0][tuple(zyx)] == int(value) for zyx in locations[:50])


def test_resume_skips_complete_cases_and_redoes_incomplete(dataset):
    raw, folder, _, plans = dataset
    output = folder / IDENTIFIER
    preprocess_dataset(988, num_processes=1, progress=False)
    before = (output / "case_001.npy").stat().st_mtime_ns
    assert preprocess_dataset(988, num_processes=1, progress=False)[IDENTIFIER] == {"processed": 0, "skipped": 3}
    assert (output / "case_001.npy").stat().st_mtime_ns == before
    (output / "case_001.json").unlink()  # as if killed before the completion marker was renamed
    (output / ".tmp_deadbeef_case_001.npy").write_bytes(b"half")
    assert preprocess_dataset(988, num_processes=1, progress=False)[IDENTIFIER] == {"processed": 1, "skipped": 2}
    assert (output / "case_001.json").is_file()
    assert not [p.name for p in output.iterdir() if p.name.startswith(".tmp_")]
    plans["configurations"]["3d_fullres"]["spacing"] = [2.0, 2.0, 2.0]  # other plans -> stale cases
    plans["configurations"]["2.5d"]["spacing"] = [2.0, 2.0, 2.0]
    (folder / "synthUNetPlans.json").write_text(json.dumps(plans))
    assert preprocess_main(["-d", "988", "-c", "3d_fullres", "-np", "2", "--no_progress"]) == 0
    assert load_case(output, "case_002")[2]["spacing"] == [2.0, 2.0, 2.0]
    assert preprocess_dataset(988, configurations=["2.5d"], overwrite=True, num_processes=1,
                              progress=False)[IDENTIFIER]["processed"] == 3


@pytest.mark.parametrize("file_format", ["npy", "b2nd"])
def test_patch_reads_return_the_right_values(tmp_path, file_format):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(4, 30, 33, 28)).astype(np.float32)
    save_array(array, tmp_path / "case", file_format)
    lazy = open_array(tmp_path / "case", mmap=True)
    assert not isinstance(lazy, np.ndarray) or isinstance(lazy, np.memmap)
    patch = (slice(None), slice(3, 19), slice(10, 26), slice(5, 21))
    np.testing.assert_array_equal(np.asarray(lazy[patch]), array[patch])
    np.testing.assert_array_equal(np.asarray(lazy[1:3, 7, :, 2:9]), array[1:3, 7, :, 2:9])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp_")]


def test_load_case_slices_lazily(dataset):
    _, folder, _, _ = dataset
    preprocess_dataset(988, num_processes=1, progress=False)
    data, seg, properties = load_case(folder / IDENTIFIER, "case_000", mmap=True)
    full, full_seg, _ = load_case(folder / IDENTIFIER, "case_000", mmap=False)
    assert isinstance(data, np.memmap) and isinstance(seg, np.memmap)
    np.testing.assert_array_equal(data[:, 2:10, 3:9, 1:7], full[:, 2:10, 3:9, 1:7])
    np.testing.assert_array_equal(seg[:, 4:6], full_seg[:, 4:6])
    preprocess_dataset(988, num_processes=1, progress=False, overwrite=True, file_format="b2nd")
    assert not list((folder / IDENTIFIER).glob("*.npy"))  # the other format's files are replaced, not shadowing
    data, seg, properties = load_case(folder / IDENTIFIER, "case_000", mmap=True)
    assert properties["file_format"] == "b2nd" and not isinstance(data, np.ndarray)
    np.testing.assert_allclose(data[:, 2:10, 3:9, 1:7], full[:, 2:10, 3:9, 1:7])
    np.testing.assert_array_equal(seg[:, 4:6], full_seg[:, 4:6])


def test_inference_preprocessing_matches_training(dataset):
    raw, folder, _, plans = dataset
    preprocess_dataset(988, num_processes=1, progress=False)
    trained, _, training_properties = load_case(folder / IDENTIFIER, "case_002", mmap=False)
    files = [raw / "imagesTr" / f"case_002_{c:04d}.nii.gz" for c in range(4)]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "masksTr" / "case_002.nii.gz")))
    data, properties = preprocess_case_for_inference(files, None, plans, "3d_fullres", CHANNELS, brain_mask=mask)
    np.testing.assert_allclose(data, trained, atol=1e-6)
    assert properties["bbox"] == training_properties["bbox"]
    without_t1c, _ = preprocess_case_for_inference([files[0], files[2], files[3]], None, plans, "3d_fullres",
                                                   ["T1N", "T2W", "T2F"], brain_mask=mask)
    assert np.all(without_t1c[1] == 0)
    np.testing.assert_allclose(without_t1c[[0, 2, 3]], trained[[0, 2, 3]], atol=1e-6)
    # a training case written back: the brain given on the preprocessed grid (seg >= 0) zeroes the background
    _, seg, _ = load_case(folder / IDENTIFIER, "case_002", mmap=False)
    restored = revert_preprocessing(trained[1], training_properties, plans, "3d_fullres", "T1C",
                                    brain_mask=seg[0] >= 0)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "masksTr" / "case_002.nii.gz"))) > 0
    assert restored.shape == brain.shape and restored.min() >= 0
    assert (restored[~brain] == 0).mean() > 0.95 and (restored[brain] > 0).mean() > 0.95  # nearest-resampled edge


def test_inference_round_trip_restores_geometry_and_values(tmp_path):
    shape = (15, 31, 27)  # odd, anisotropic: spacing (z, y, x) = (3.5, 1.0, 1.2) -> separate z
    spacing_zyx = (3.5, 1.0, 1.2)
    geometry = Geometry(itk_spacing=spacing_zyx[::-1], itk_origin=(12.0, -40.5, 7.25),
                        itk_direction=OBLIQUE_DIRECTION, shape=shape)
    brain = ellipsoid(shape, radii=(0.9, 0.85, 0.8))
    z, y, x = np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, spacing_zyx)], indexing="ij")
    smooth = 400.0 + 3.0 * x + 2.0 * y + 1.5 * z + 30.0 * np.sin(y / 9.0) * np.cos(x / 11.0)
    image = np.where(brain, smooth, 0).astype(np.float32)
    percentiles = [0.5, 1, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 99, 99.5]
    landmarks = np.percentile(image[brain], percentiles).tolist()
    fingerprint = {"dataset_name": "Dataset1_X", "channel_names": {"0": "T1N", "1": "T1C"}, "label_values": [],
                   "landmark_percentiles": percentiles,
                   "landmarks": {"T1N": {"a": landmarks}, "T1C": {"a": landmarks}}}
    for order_z in (0, 1):
        plans = minimal_plans(fingerprint, spacing=(2.0, 1.5, 1.5), order_z=order_z)
        data, properties = preprocess_case_for_inference([image, image], geometry, plans, "3d_fullres",
                                                         ["T1N", "T1C"])
        assert data.shape[1:] == tuple(compute_new_shape(properties["shape_after_cropping"], spacing_zyx,
                                                         (2.0, 1.5, 1.5)))
        restored = revert_preprocessing(data[1], properties, plans, "3d_fullres", target="T1C")
        assert restored.shape == shape and restored.dtype == np.float32 and restored.min() >= 0
        assert np.all(restored[~brain] == 0)
        from scipy.ndimage import binary_erosion

        core = binary_erosion(brain, iterations=2)
        error = np.abs(restored[core] - image[core]) / image[core]
        assert np.median(error) < 1e-3 and error.max() < 0.03, (order_z, error.max())
    write_image(restored, Geometry.from_dict(properties["geometry"]), tmp_path / "prediction.nii.gz")
    written, _ = read_geometry(tmp_path / "prediction.nii.gz")
    assert written.differences(geometry) == []


def test_unlabelled_anisotropic_dataset_without_masks(tmp_path, monkeypatch):
    raw = make_tiny_raw_dataset(tmp_path / "raw" / "Dataset989_Aniso", n_cases=2, shape=(8, 24, 22),
                                with_labels=False, with_masks=False, anisotropic=True, vary=False)
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("synthUNet_preprocessed", str(tmp_path / "preprocessed"))
    fingerprint = compute_fingerprint(raw, num_processes=1, progress=False)
    assert fingerprint["anisotropy"] == pytest.approx(4.0) and fingerprint["label_values"] == []
    folder = tmp_path / "preprocessed" / raw.name
    folder.mkdir(parents=True)
    (folder / "synthUNetPlans.json").write_text(json.dumps(minimal_plans(fingerprint, spacing=(2.0, 2.0, 2.0))))
    preprocess_dataset(989, configurations=["3d_fullres"], num_processes=1, progress=False)
    for case_id, entry in fingerprint["cases"].items():
        data, seg, properties = load_case(folder / IDENTIFIER, case_id)
        assert entry["brain_mask_source"] == "nonzero" and properties["brain_mask_source"] == "nonzero"
        assert data.shape[1:] == compute_new_shape(entry["shape_after_cropping"], (4.0, 1.0, 1.0), (2.0, 2.0, 2.0))
        assert set(np.unique(seg)) == {-1, 0} and properties["class_locations"] == {}
        assert not properties["has_labels"] and properties["labels_present"] == []


@pytest.mark.parametrize("spacing_zyx", [(2.0, 2.0, 2.0), (4.0, 1.0, 1.0)])
def test_a_reverted_prediction_is_zero_wherever_every_input_is_zero(spacing_zyx):
    """A slit of zeros inside the brain (closed in 2D slices, so the filled brain mask covers it) stays 0."""
    shape = (14, 30, 28)
    geometry = Geometry(itk_spacing=spacing_zyx[::-1], itk_origin=(0.0, 0.0, 0.0),
                        itk_direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), shape=shape)
    brain = ellipsoid(shape, radii=(0.9, 0.85, 0.85))
    image = np.where(brain, 100.0 + np.arange(shape[2])[None, None, :], 0.0).astype(np.float32)
    image[:, 14:16, 6:22] = 0  # a zero slit through every z slice, inside the brain in each (y, x) slice's outline
    percentiles = [0.5, 1, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 99, 99.5]
    landmarks = np.percentile(image[image != 0], percentiles).tolist()
    fingerprint = {"dataset_name": "Dataset1_X", "channel_names": {"0": "T1N", "1": "T1C"}, "label_values": [],
                   "landmark_percentiles": percentiles,
                   "landmarks": {"T1N": {"a": landmarks}, "T1C": {"a": landmarks}}}
    plans = minimal_plans(fingerprint, spacing=(2.0, 2.0, 2.0), order_z=0)
    data, properties = preprocess_case_for_inference([image], geometry, plans, "3d_fullres", ["T1N"])
    from synthunet.dataset.brain_mask import nonzero_brain_mask

    assert nonzero_brain_mask([image])[image == 0].any()  # the filled brain covers zeros: the case under test
    prediction = np.full(data.shape[1:], 50.0, dtype=np.float32)  # a prediction that is non-zero everywhere
    restored = revert_preprocessing(prediction, properties, plans, "3d_fullres", target="T1C")
    assert restored.shape == shape
    assert np.all(restored[image == 0] == 0)
    assert np.all(restored[image != 0] > 0)


def test_a_same_sequence_export_returns_to_the_inputs_own_intensity_scale():
    """Super-resolution: a prediction equal to the input (on the target's standard scale) is exported back to the
    input exactly with the input's own landmarks; the plans' reference landmarks would rescale it."""
    from synthunet.preprocessing.nyul import apply_nyul, nyul_landmarks

    shape = (12, 20, 18)
    geometry = Geometry(itk_spacing=(1.0, 1.0, 1.0), itk_origin=(0.0, 0.0, 0.0),
                        itk_direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), shape=shape)
    brain = ellipsoid(shape, radii=(0.9, 0.85, 0.85))
    rng = np.random.default_rng(0)
    image = np.where(brain, 300.0 + 80.0 * rng.random(shape), 0.0).astype(np.float32)
    percentiles = [0.5, 1, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 99, 99.5]
    other = np.percentile(image[brain] * 3.0 + 50.0, percentiles).tolist()  # the training cases: another scale
    fingerprint = {"dataset_name": "Dataset1_SR", "channel_names": {"0": "T2F_LR", "1": "T2F"}, "label_values": [],
                   "landmark_percentiles": percentiles,
                   "landmarks": {"T2F_LR": {"a": other}, "T2F": {"a": [v * 1.3 for v in other]}}}
    plans = minimal_plans(fingerprint, spacing=(1.0, 1.0, 1.0))
    data, properties = preprocess_case_for_inference([image], geometry, plans, "3d_fullres", ["T2F_LR"])
    block = plans["normalization"]
    own = nyul_landmarks(image, brain, block["landmark_percentiles"])
    cropped_image = image[tuple(slice(a, b) for a, b in properties["bbox"])]
    cropped_brain = brain[tuple(slice(a, b) for a, b in properties["bbox"])]
    as_target = apply_nyul(cropped_image, cropped_brain, own, np.asarray(block["standard_scales"]["T2F"]))
    as_target = as_target / float(block["range_divisor"])
    restored = revert_preprocessing(as_target, properties, plans, "3d_fullres", target="T2F", landmarks_from="T2F_LR")
    np.testing.assert_allclose(restored[brain], image[brain], rtol=1e-4)
    by_reference = revert_preprocessing(as_target, properties, plans, "3d_fullres", target="T2F")
    assert np.median(np.abs(by_reference[brain] - image[brain]) / image[brain]) > 0.2
