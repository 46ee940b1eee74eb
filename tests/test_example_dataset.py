"""Tests of the embedded phantom dataset (synthunet.dataset.example). Coarse spacings keep them fast."""
from __future__ import annotations


import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage

from synthunet.dataset.dataset_json import load_dataset_json
from synthunet.dataset.example import CHANNELS, TISSUES, generate_case
from synthunet.dataset.example import generate as generate_module
from synthunet.dataset.example import mri_physics
from synthunet.dataset.example.anatomy import DATA_FOLDER, load_template
from synthunet.dataset.image_io import read_image
from synthunet.dataset.raw_cases import list_raw_cases
from synthunet.dataset.validate import validate_dataset

FAST_SPACING = 4.0


def _same_case(a, b) -> bool:
    return (all(np.array_equal(a.images[c], b.images[c]) for c in CHANNELS)
            and np.array_equal(a.labels, b.labels) and a.geometry == b.geometry)


def test_same_seed_same_case_and_other_seed_differs():
    first = generate_case(2, seed=7, spacing=FAST_SPACING)
    again = generate_case(2, seed=7, spacing=FAST_SPACING)
    other_seed = generate_case(2, seed=8, spacing=FAST_SPACING)
    other_index = generate_case(3, seed=7, spacing=FAST_SPACING)
    assert _same_case(first, again)
    assert not _same_case(first, other_seed)
    assert not _same_case(first, other_index)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_case_structure(index):
    case = generate_case(index, seed=0, spacing=FAST_SPACING, anisotropic_fraction=0.5)
    shape = case.geometry.shape
    assert case.case_id == f"Phantom_{index:03d}"
    assert list(case.images) == list(CHANNELS)
    for channel in CHANNELS:
        image = case.images[channel]
        assert image.shape == shape and image.dtype == np.float32
        assert np.isfinite(image).all() and (image >= 0).all()
        assert not image[case.mask == 0].any(), "images must be 0 outside the brain mask (skull-stripped)"
    assert case.labels.shape == shape and case.labels.dtype == np.uint8
    assert set(np.unique(case.labels)) <= {0, 1, 2, 3}
    assert not case.labels[case.mask == 0].any(), "labels must lie inside the brain mask"
    assert (case.labels > 0).sum() > 0, "every case has a tumour"
    total = sum(case.tissue_probabilities[t] for t in TISSUES)
    assert set(case.tissue_probabilities) == set(TISSUES)
    np.testing.assert_allclose(total[case.mask > 0], 1.0, atol=1e-4)
    assert not total[case.mask == 0].any()
    brain_ml = case.mask.sum() * np.prod(case.geometry.spacing) / 1000
    assert 900 < brain_ml < 2000
    assert min(case.geometry.spacing) == pytest.approx(FAST_SPACING)


def _ratio(case, channel: str, tissue: str, threshold: float = 0.85) -> float:
    """median(tissue) / median(WM) in one channel: independent of the scanner gain."""
    p = case.tissue_probabilities
    selected, white = p[tissue] > threshold, p["WM"] > threshold
    assert selected.sum() >= 5 and white.sum() >= 50, f"too few {tissue} voxels in {case.case_id}"
    image = case.images[channel]
    return float(np.median(image[selected]) / np.median(image[white]))


@pytest.mark.parametrize("index", [0, 1, 3])
def test_contrast_follows_the_physics(index):
    case = generate_case(index, seed=0, spacing=3.0, anisotropic_fraction=0.0)
    assert _ratio(case, "T1N", "CSF") < 0.7, "CSF must be darker than WM on T1N"
    assert _ratio(case, "T2W", "CSF") > 1.8, "CSF must be brighter than WM on T2W"
    assert _ratio(case, "T2F", "CSF") < 0.4, "CSF must be nulled on FLAIR"
    assert _ratio(case, "T2F", "CSF") < 0.4 * _ratio(case, "T2F", "GM")
    assert _ratio(case, "T2W", "GM") > 1.0, "GM brighter than WM on T2W"
    assert _ratio(case, "T1N", "GM") < 1.0, "GM darker than WM on T1N"
    assert _ratio(case, "T2F", "ED", 0.5) > 1.2, "oedema is hyperintense on FLAIR"
    enhancing_t1c = _ratio(case, "T1C", "ET", 0.5)
    assert enhancing_t1c > _ratio(case, "T1N", "ET", 0.5) + 0.3, "ET must enhance on T1C"
    assert enhancing_t1c > 1.0


@pytest.mark.parametrize("index", [0, 2])
def test_oracle_is_the_noise_free_bias_free_signal_at_the_image_gain(index):
    """image - oracle is the bias field and the noise, nothing else: the oracle of pure white matter is exactly the
    channel's gain (no bias, no noise, same gain), and after a local fit of the smooth bias ratio image/oracle the
    rest is zero-mean noise of the documented level 1/SNR, uncorrelated with the signal."""
    case = generate_case(index, seed=0, spacing=FAST_SPACING)
    brain = case.mask > 0
    white = case.tissue_probabilities["WM"] > 0.999
    assert white.sum() >= 20
    assert list(case.oracle) == list(CHANNELS)
    for channel in CHANNELS:
        image, oracle = case.images[channel].astype(np.float64), case.oracle[channel]
        assert oracle.shape == image.shape and oracle.dtype == np.float32 and np.isfinite(oracle).all()
        assert (oracle >= 0).all() and not oracle[~brain].any() and (oracle[brain] > 0).mean() > 0.99
        oracle = oracle.astype(np.float64)
        record = case.parameters["channels"][channel]
        gain, sigma, bias_std = record["gain"], 1.0 / record["snr_wm"], record["bias_log_std"]
        # each channel is relative to its WM signal: pure WM is the gain itself, to the 10-bit rounding
        np.testing.assert_allclose(oracle[white] / gain, 1.0, atol=2e-3)
        # ... while the image's WM carries the bias field and the noise
        assert np.std(image[white] / gain) > max(0.5 * sigma, 0.2 * bias_std)
        # bias = the smooth ratio image / oracle, fitted locally (least squares, a Gaussian window of one voxel)
        weight = brain.astype(np.float64)
        bias = (ndimage.gaussian_filter(image * oracle * weight, 1.0)
                / np.maximum(ndimage.gaussian_filter(oracle * oracle * weight, 1.0), 1e-30))
        noise = (image - bias * oracle) / gain
        # where the signal is 0.5-2 x WM, Rician noise is Gaussian to within 5 % of sigma
        selected = brain & (oracle > 0.5 * gain) & (oracle < 2.0 * gain)
        assert selected.sum() > 1000
        residual = noise[selected]
        assert abs(residual.mean()) < 0.15 * sigma, (channel, residual.mean() / sigma)
        assert 0.85 * sigma < residual.std() < 1.15 * sigma, (channel, residual.std() / sigma)
        assert abs(np.corrcoef(residual, oracle[selected])[0, 1]) < 0.15
        assert 0.5 < bias[brain].min() and bias[brain].max() < 2.0


def test_oracle_does_not_change_the_images():
    """The oracle uses no random numbers: a case made without it has the same images (bit for bit)."""
    with_oracle = generate_case(1, seed=4, spacing=6.0, anisotropic_fraction=1.0)
    without = generate_case(1, seed=4, spacing=6.0, anisotropic_fraction=1.0, oracle=False)
    assert without.oracle == {} and list(with_oracle.oracle) == list(CHANNELS)
    assert _same_case(with_oracle, without) and np.array_equal(with_oracle.mask, without.mask)


def test_gains_span_orders_of_magnitude():
    gains = [generate_case(i, seed=1, spacing=6.0).parameters["channels"][c]["gain"] for i in range(6) for c in CHANNELS]
    assert min(gains) >= 1.0 and max(gains) <= 1000.0
    assert max(gains) / min(gains) > 100


def test_flair_inversion_time_nulls_csf():
    ti = mri_physics.flair_null_inversion_time(4200.0, 9000.0)
    assert 2000 < ti < 2800
    csf = mri_physics.inversion_recovery(1.0, 4200.0, 1800.0, 9000.0, 100.0, ti)
    white = mri_physics.inversion_recovery(0.69, 900.0, 75.0, 9000.0, 100.0, ti)
    assert csf < 1e-6 < white


def test_shipped_template_and_notice():
    template = load_template(2.0)
    total = sum(template.fractions.values())
    assert total.max() <= 1.0 + 1e-6
    brain_ml = template.brain.sum() * template.spacing ** 3 / 1000
    assert 1500 < brain_ml < 2200  # the MNI brain is larger than a native one
    notice = (DATA_FOLDER / "NOTICE_ICBM152.txt").read_text()
    assert "Louis Collins, McConnell Brain Imaging Centre" in notice
    assert sum(p.stat().st_size for p in DATA_FOLDER.glob("*.npz")) < 4e6


def _run(argv: list[str]) -> int:
    return generate_module.main(argv + ["--no_progress"])


def test_command_writes_a_valid_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    preview = tmp_path / "preview.png"
    argv = ["-d", "502", "--num_cases", "2", "--spacing", str(FAST_SPACING), "-np", "1", "--seed", "5"]
    assert _run(argv + ["--preview", str(preview)]) == 0
    folder = tmp_path / "raw" / "Dataset502_BraTSPhantom"
    description = load_dataset_json(folder / "dataset.json")
    assert description.channels == list(CHANNELS)
    assert description.labels == {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
    assert description.num_training == 2 and description.file_ending == ".nii.gz"
    for index in range(2):
        case = f"Phantom_{index:03d}"
        arrays = [read_image(folder / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(4)]
        labels, label_geometry = read_image(folder / "labelsTr" / f"{case}.nii.gz", dtype=None)
        mask, mask_geometry = read_image(folder / "masksTr" / f"{case}.nii.gz", dtype=None)
        assert labels.dtype == np.uint8 and mask.dtype == np.uint8
        for _, geometry in arrays[1:]:
            assert geometry == arrays[0][1]
        assert label_geometry.differences(arrays[0][1]) == [] and mask_geometry.differences(arrays[0][1]) == []
        assert set(np.unique(labels)) <= {0, 1, 2, 3} and not labels[mask == 0].any()
        in_memory = generate_case(index, seed=5, spacing=FAST_SPACING)
        np.testing.assert_array_equal(arrays[1][0], in_memory.images["T1C"])
        # oracleTr/: same names, geometry and dtype as imagesTr, the in-memory oracle
        for channel_index, channel in enumerate(CHANNELS):
            oracle, oracle_geometry = read_image(folder / "oracleTr" / f"{case}_{channel_index:04d}.nii.gz",
                                                 dtype=None)
            assert oracle.dtype == np.float32 and oracle_geometry == arrays[0][1]
            np.testing.assert_array_equal(oracle, in_memory.oracle[channel])
    names = sorted(p.name for p in (folder / "imagesTr").iterdir())
    assert sorted(p.name for p in (folder / "oracleTr").iterdir()) == names
    assert json.loads((folder / "dataset.json").read_text())["generator"]["oracle_folder"] == "oracleTr"
    # the validator and the preprocessing's case listing see imagesTr, labelsTr and masksTr only
    assert validate_dataset(folder, progress=False) == []
    listed = list_raw_cases(folder)
    assert [c.case_id for c in listed] == ["Phantom_000", "Phantom_001"]
    assert all(p.parent.name == "imagesTr" for c in listed for p in c.images.values())
    assert preview.is_file() and 5_000 < preview.stat().st_size < 300_000
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset502_BraTSPhantom"]
    # An existing dataset is kept unless --overwrite.
    assert _run(argv) == 2
    assert _run(argv + ["--overwrite", "--num_cases", "1"]) == 0
    assert load_dataset_json(folder).num_training == 1
    assert len(list((folder / "imagesTr").iterdir())) == 4
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["Dataset502_BraTSPhantom"]


def test_worker_count_does_not_change_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("synthUNet_raw", str(tmp_path))
    assert _run(["-d", "503", "--num_cases", "2", "--spacing", "6", "-np", "2"]) == 0
    written, _ = read_image(tmp_path / "Dataset503_BraTSPhantom" / "imagesTr" / "Phantom_001_0003.nii.gz")
    np.testing.assert_array_equal(written, generate_case(1, seed=0, spacing=6.0).images["T2F"])


def _digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.nii.gz"))}


def test_no_oracle_writes_the_same_files_without_oracle_tr(tmp_path, monkeypatch):
    """--no_oracle leaves out oracleTr/ and nothing else: the other files are byte-identical."""
    monkeypatch.setenv("synthUNet_raw", str(tmp_path))
    argv = ["--num_cases", "1", "--spacing", "6", "-np", "1", "--seed", "2", "--anisotropic_fraction", "1"]
    assert _run(["-d", "507", *argv]) == 0
    assert _run(["-d", "508", *argv, "--no_oracle"]) == 0
    with_oracle = _digests(tmp_path / "Dataset507_BraTSPhantom")
    without = _digests(tmp_path / "Dataset508_BraTSPhantom")
    assert not (tmp_path / "Dataset508_BraTSPhantom" / "oracleTr").exists()
    assert sorted(k for k in with_oracle if k.startswith("oracleTr")) == [f"oracleTr/Phantom_000_{c:04d}.nii.gz"
                                                                          for c in range(4)]
    assert without == {k: v for k, v in with_oracle.items() if not k.startswith("oracleTr")}
    assert len(without) == 6
    generator = json.loads((tmp_path / "Dataset508_BraTSPhantom" / "dataset.json").read_text())["generator"]
    assert generator["oracle_folder"] is None


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("synthUNet_raw", str(tmp_path))
    original = generate_module.write_case

    def failing(index, *args, **kwargs):
        if index == 1:
            raise KeyboardInterrupt
        return original(index, *args, **kwargs)

    monkeypatch.setattr(generate_module, "write_case", failing)
    assert _run(["-d", "504", "--num_cases", "2", "--spacing", "6", "-np", "1"]) == 130
    assert list(tmp_path.iterdir()) == []


def test_clear_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("synthUNet_raw", raising=False)
    assert _run(["-d", "505", "--num_cases", "1"]) == 2
    assert "synthUNet_raw is not set" in capsys.readouterr().err
    monkeypatch.setenv("synthUNet_raw", str(tmp_path))
    (tmp_path / "Dataset505_Other").mkdir()
    assert _run(["-d", "505", "--num_cases", "1"]) == 2
    assert "already used by Dataset505_Other" in capsys.readouterr().err
    assert _run(["-d", "506", "--num_cases", "0"]) == 2
    with pytest.raises(SystemExit):
        generate_module.main(["-h"])
    assert "--spacing" in capsys.readouterr().out
