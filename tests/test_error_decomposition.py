"""benchmarks/error_decomposition.py: the gain fit, the gain-fitted PSNR and the tissue split, by hand and numpy."""
from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from test_benchmark_scripts import load


@pytest.fixture(scope="module")
def module():
    return load("error_decomposition")


def phantom(seed: int = 0, shape=(24, 24, 24)):
    """A smooth positive volume, a spherical brain mask and labels (healthy 0, ED 2 shell, ET 3 core)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(0))
    brain = radius < 0.9
    reference = (100 + 30 * np.sin(3 * grid[0]) * np.cos(2 * grid[1]) + rng.normal(0, 3, shape)) * brain
    labels = np.zeros(shape, np.int16)
    labels[(radius < 0.35) & brain] = 2
    labels[radius < 0.2] = 3
    reference[labels == 3] += 80.0
    return reference.astype(np.float64), brain, labels


def by_hand_normalise(volume, brain):
    low, high = np.percentile(volume[brain], [0.5, 99.5])
    low = max(low, 0.0)
    return (volume - low) / (high - low)


def test_fitted_gain_is_the_least_squares_solution(module):
    rng = np.random.default_rng(3)
    prediction = rng.normal(1, 0.3, 500)
    reference = 0.8 * prediction + rng.normal(0, 0.05, 500)
    expected = np.linalg.lstsq(prediction[:, None], reference, rcond=None)[0][0]
    assert module.fitted_gain(reference, prediction) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(module.fitted_gain(reference, np.zeros(500)))


def test_an_affine_copy_is_perfect_at_gain_one(module):
    reference, brain, labels = phantom()
    result = module.decompose_case(reference, 0.3 * reference + 5.0 * brain, brain, labels)
    assert result["psnr"] == pytest.approx(100.0)  # the metric's cap: identical after normalisation
    assert result["gain"] == pytest.approx(1.0, abs=1e-9)
    assert result["gain_fitted_psnr"] == pytest.approx(100.0)


def test_a_dim_tail_is_a_scale_error_that_the_gain_fit_removes(module):
    reference, brain, labels = phantom(1)
    # the prediction's brightest voxels (the ET core) are too dark: its 99.5th percentile drops, so the metric's
    # normalisation brightens the whole prediction
    prediction = reference.copy()
    prediction[labels == 3] -= 60.0
    result = module.decompose_case(reference, prediction, brain, labels)
    r, p = by_hand_normalise(reference, brain)[brain], by_hand_normalise(prediction, brain)[brain]
    gain = float(np.sum(r * p) / np.sum(p * p))
    data_range = r.max() - r.min()
    expected_fitted = 10 * np.log10(data_range ** 2 / np.mean((r - gain * p) ** 2))
    expected_scored = 10 * np.log10(data_range ** 2 / np.mean((r - p) ** 2))
    assert result["gain"] == pytest.approx(gain, rel=1e-9) and result["gain"] < 0.95
    assert result["gain_fitted_psnr"] == pytest.approx(expected_fitted, rel=1e-9)
    assert result["psnr"] == pytest.approx(expected_scored, rel=1e-9)
    assert result["gain_fitted_psnr"] > result["psnr"] + 3.0


def test_error_shares_follow_the_tissue_that_is_wrong(module):
    reference, brain, labels = phantom(2)
    prediction = reference.copy()
    prediction[labels == 2] += 25.0  # only the oedema shell is wrong (and stays below the 99.5th percentile)
    result = module.decompose_case(reference, prediction, brain, labels)
    summary = module.summarise([result])
    assert sum(summary["error_share"].values()) == pytest.approx(1.0)
    assert summary["error_share"]["ED"] > 0.9
    assert set(summary["error_share"]) == {"healthy", "ED", "ET"}


def test_oracle_column_scores_against_the_true_signal(module):
    reference, brain, labels = phantom(4)
    truth = reference.copy()
    noisy = reference + np.random.default_rng(5).normal(0, 10, reference.shape) * brain
    perfect = module.decompose_case(noisy, truth, brain, labels, oracle=truth)
    assert perfect["oracle_psnr"] == pytest.approx(100.0)
    assert perfect["gain_fitted_psnr"] < 40.0  # against the noisy reference it is not perfect
    assert "oracle_psnr" not in module.decompose_case(noisy, truth, brain, labels)


def test_analyse_reads_a_quality_work_folder(module, tmp_path):
    raw = tmp_path / "raw"
    for folder in ("imagesTr", "masksTr", "labelsTr", "oracleTr"):
        (raw / folder).mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1N", "1": "T1C"},
                                                  "file_ending": ".nii.gz"}))
    predictions = tmp_path / "work" / "predictions" / "SynthTrainer__3d_fullres__3d" / "T1C" / "fold_0"
    predictions.mkdir(parents=True)

    def save(array, path):
        nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.eye(4)), str(path))

    for i in range(2):
        reference, brain, labels = phantom(10 + i)
        case = f"Case_{i:03d}"
        save(reference, raw / "imagesTr" / f"{case}_0001.nii.gz")
        save(reference * 0.5, raw / "imagesTr" / f"{case}_0000.nii.gz")
        save(reference, raw / "oracleTr" / f"{case}_0001.nii.gz")
        save(brain, raw / "masksTr" / f"{case}.nii.gz")
        save(labels, raw / "labelsTr" / f"{case}.nii.gz")
        save(2.0 * reference, predictions / f"{case}-t1c.nii.gz")  # BraSyn name; any gain is fine
    output = tmp_path / "table.md"
    assert module.main(["--work_dir", str(tmp_path / "work"), "--raw", str(raw), "--target", "T1C",
                        "-o", str(output)]) == 0
    summary = json.loads(output.with_suffix(".json").read_text())["SynthTrainer__3d_fullres__3d"]
    assert summary["n_cases"] == 2
    assert summary["gain"] == pytest.approx(1.0, abs=1e-6)
    assert summary["oracle_psnr"] > 90
    assert "| SynthTrainer__3d_fullres__3d | 2 |" in output.read_text()
