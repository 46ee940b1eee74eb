"""benchmarks/input_limit.py on a tiny dataset whose target is an exact function of its noise-free input."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from test_benchmark_scripts import load


def write_dataset(root, n_cases=4, shape=(16, 16, 16)):
    """Channel 0 ``A`` (input) and 1 ``B`` (target = 2 * A's signal); images add noise, oracleTr has none."""
    for folder in ("imagesTr", "oracleTr", "masksTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = (grid ** 2).sum(0) < 0.8
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i in range(n_cases):
        rng = np.random.default_rng(i)
        signal = (1.0 + 0.5 * np.sin(3 * grid[0] + i) * np.cos(2 * grid[1])) * brain
        case = f"Case_{i:03d}"
        for channel, clean in enumerate((signal, 2.0 * signal)):
            noisy = np.abs(clean + rng.normal(0, 0.1, shape)) * brain
            nib.save(nib.Nifti1Image(noisy.astype(np.float32), affine), root / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
            nib.save(nib.Nifti1Image(clean.astype(np.float32), affine), root / "oracleTr" / f"{case}_{channel:04d}.nii.gz")
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), root / "masksTr" / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "A", "1": "B"}, "file_ending": ".nii.gz",
                                                       "numTraining": n_cases}))
    return {"train": [f"Case_{i:03d}" for i in range(n_cases - 1)], "val": [f"Case_{n_cases - 1:03d}"]}


def test_clean_inputs_recover_an_exact_mapping_and_noisy_ones_do_not(tmp_path):
    module = load("input_limit")
    split = write_dataset(tmp_path)
    rows = module.run(tmp_path, split, "B", copy="A")
    assert set(rows) == {"regression, acquired inputs", "regression, oracle inputs", "copy of A (oracle)", "oracle"}
    assert rows["oracle"]["oracle_psnr"] == pytest.approx(100.0)
    assert rows["copy of A (oracle)"]["oracle_psnr"] == pytest.approx(100.0)  # B's signal is a multiple of A's
    assert rows["regression, oracle inputs"]["oracle_psnr"] > 40.0
    assert rows["regression, acquired inputs"]["oracle_psnr"] < rows["regression, oracle inputs"]["oracle_psnr"] - 10
    assert all(row["n_cases"] == 1 for row in rows.values())
