"""Fingerprint extraction on a tiny raw dataset, checked against independent NumPy / nibabel computations."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from synthunet.fingerprint import compute_fingerprint, extract_fingerprint
from synthunet.fingerprint.cli import main as fingerprint_main
from synthetic_raw import make_tiny_raw_dataset


def _nib(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory):
    return make_tiny_raw_dataset(tmp_path_factory.mktemp("raw") / "Dataset987_Tiny", n_cases=3, shape=(20, 22, 18))


@pytest.fixture
def environment(tmp_path, tiny_raw, monkeypatch):
    monkeypatch.setenv("synthUNet_raw", str(tiny_raw.parent))
    monkeypatch.setenv("synthUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    return tmp_path / "preprocessed" / tiny_raw.name


def test_fingerprint_matches_independent_computation(tiny_raw):
    fingerprint = compute_fingerprint(tiny_raw, num_processes=1, progress=False)
    case_ids = sorted(fingerprint["cases"])
    assert case_ids == ["case_000", "case_001", "case_002"] and fingerprint["num_cases"] == 3
    spacings, cropped = [], []
    for case_id in case_ids:
        entry = fingerprint["cases"][case_id]
        header = nib.load(str(tiny_raw / "imagesTr" / f"{case_id}_0000.nii.gz")).header
        spacing = [float(v) for v in header.get_zooms()[::-1]]  # nibabel (x, y, z) -> (z, y, x)
        np.testing.assert_allclose(entry["spacing"], spacing, rtol=1e-6)
        mask = _nib(tiny_raw / "masksTr" / f"{case_id}.nii.gz") > 0  # (x, y, z)
        extent = [int(np.ptp(np.nonzero(mask)[axis])) + 1 for axis in (2, 1, 0)]
        assert entry["shape_after_cropping"] == extent
        assert entry["shape_before_cropping"] == list(mask.shape[::-1])
        assert entry["brain_voxels"] == int(mask.sum())
        label = _nib(tiny_raw / "labelsTr" / f"{case_id}.nii.gz")
        assert entry["tumour_fraction_of_brain"] == pytest.approx((label[mask] > 0).mean())
        assert entry["labels_present"] == sorted(int(v) for v in np.unique(label) if v)
        assert entry["channels_present"] == ["T1N", "T1C", "T2W", "T2F"]
        for channel, name in enumerate(["T1N", "T1C", "T2W", "T2F"]):
            image = _nib(tiny_raw / "imagesTr" / f"{case_id}_{channel:04d}.nii.gz").astype(np.float64)
            expected = np.percentile(image[mask], fingerprint["landmark_percentiles"])
            np.testing.assert_allclose(fingerprint["landmarks"][name][case_id], expected, rtol=1e-6)
        spacings.append(spacing)
        cropped.append(extent)
    np.testing.assert_allclose(fingerprint["median_spacing"], np.median(spacings, axis=0), rtol=1e-6)
    np.testing.assert_allclose(fingerprint["spacing_10th_percentile"], np.percentile(spacings, 10, axis=0), rtol=1e-6)
    assert fingerprint["median_shape_after_cropping"] == np.median(cropped, axis=0).tolist()
    median = np.median(spacings, axis=0)
    assert fingerprint["anisotropy"] == pytest.approx(median.max() / median.min())
    statistics = fingerprint["intensity_statistics"]["T2W"]
    assert statistics["num_samples"] == 3 * fingerprint["num_intensity_samples_per_case"]
    assert statistics["min"] <= statistics["percentile_00_5"] <= statistics["median"] <= statistics["percentile_99_5"]
    assert fingerprint["tumour"]["fraction_of_cases_with_tumour"] == 1.0
    json.dumps(fingerprint)  # plain JSON types only


def test_mask_from_nonzero_without_masks_and_parallel(tmp_path):
    raw = make_tiny_raw_dataset(tmp_path / "Dataset986_NoMask", n_cases=2, shape=(18, 20, 16), with_masks=False,
                                with_labels=False, anisotropic=True)
    serial = compute_fingerprint(raw, num_processes=1, progress=False)
    parallel = compute_fingerprint(raw, num_processes=2, progress=False)
    assert serial == parallel
    entry = serial["cases"]["case_000"]
    assert entry["brain_mask_source"] == "nonzero" and not entry["has_labels"]
    image = _nib(raw / "imagesTr" / "case_000_0000.nii.gz")
    assert entry["brain_voxels"] == int((image != 0).sum())  # the synthetic brains have no holes
    assert serial["anisotropy"] == pytest.approx(4.0, rel=0.2)
    assert serial["tumour"]["cases_with_labels"] == 0


def test_extract_writes_json_and_reuses_it(environment, tiny_raw):
    fingerprint = extract_fingerprint(987, num_processes=1, progress=False)
    path = environment / "dataset_fingerprint.json"
    assert json.loads(path.read_text()) == fingerprint
    assert (environment / "dataset.json").is_file()
    assert not [p for p in environment.iterdir() if p.name.startswith(".tmp_")]
    path.write_text(json.dumps({"marker": 1}))
    assert extract_fingerprint(987, progress=False) == {"marker": 1}  # kept without --overwrite
    assert fingerprint_main(["-d", "987", "-np", "1", "--overwrite", "--no_progress"]) == 0
    assert json.loads(path.read_text())["num_cases"] == 3


def test_verify_dataset_integrity(environment, tiny_raw, capsys):
    # the real validator: a valid dataset passes, a NaN voxel stops fingerprinting with the file named
    assert extract_fingerprint(987, num_processes=1, verify_dataset_integrity=True, progress=False)["num_cases"] == 3
    broken = tiny_raw / "imagesTr" / "case_000_0001.nii.gz"
    image = nib.load(str(broken))
    data = np.asanyarray(image.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(broken))
    with pytest.raises(ValueError, match="case_000_0001"):
        extract_fingerprint(987, num_processes=1, verify_dataset_integrity=True, overwrite=True, progress=False)
    assert fingerprint_main(["-d", "987", "--verify_dataset_integrity", "--overwrite", "--no_progress"]) == 2
    assert "case_000_0001" in capsys.readouterr().err
