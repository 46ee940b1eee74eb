"""End to end on a tiny raw dataset: fingerprint -> plans -> preprocessing (the real packages) -> training
-> full-volume validation (inference package's prediction, evaluation package's summary) -> --val_only."""
from __future__ import annotations

import json

import pytest

from synthunet.training.cli import main
from test_training_fixtures import single_thread, tiny_plans  # noqa: F401 (fixture)
from synthetic_raw import make_tiny_raw_dataset

pytestmark = pytest.mark.usefixtures("single_thread")
DATASET = "Dataset992_E2E"


def _plan_and_preprocess(root, monkeypatch, n_cases=5):
    from synthunet.fingerprint.extractor import extract_fingerprint
    from synthunet.preprocessing import normalization_plans_entry, preprocess_dataset

    for key in ("raw", "preprocessed", "results"):
        (root / key).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(f"synthUNet_{key}", str(root / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    make_tiny_raw_dataset(root / "raw" / DATASET, n_cases=n_cases, shape=(22, 24, 20), seed=3)
    fingerprint = extract_fingerprint(DATASET, num_processes=1, progress=False)
    plans = tiny_plans(patch_3d=(16, 16, 16), patch_2d=(16, 16))
    plans["dataset_name"] = DATASET
    plans["normalization"] = normalization_plans_entry(fingerprint)
    (root / "preprocessed" / DATASET / "synthUNetPlans.json").write_text(json.dumps(plans))
    preprocess_dataset(DATASET, num_processes=1, progress=False)


@pytest.mark.parametrize("configuration,target", [("3d_fullres", "T1C"), ("2.5d", "T2F")])
def test_train_validate_and_val_only(tmp_path, monkeypatch, configuration, target):
    _plan_and_preprocess(tmp_path, monkeypatch)
    assert main(["992", configuration, target, "0", "--epochs", "1", "--device", "cpu"]) == 0
    model = tmp_path / "results" / DATASET / f"SynthTrainer__synthUNetPlans__{configuration}__{target}"
    fold = model / "fold_0"
    for file in ("plans.json", "dataset.json", "dataset_fingerprint.json", "model_info.json"):
        assert (model / file).is_file(), file
    for file in ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth", "training_log.txt",
                 "progress.png", "validation/summary.json", "validation/per_case.csv"):
        assert (fold / file).is_file(), file
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    splits = json.loads((tmp_path / "preprocessed" / DATASET / "splits_final.json").read_text())
    assert summary["cases"] == sorted(splits[0]["val"]) and summary["targets"] == [target]
    predictions = sorted(p.name for p in (fold / "validation").glob("*.nii.gz"))
    channel = ["T1N", "T1C", "T2W", "T2F"].index(target)
    assert predictions == sorted(f"{c}_{channel:04d}.nii.gz" for c in splits[0]["val"])
    (fold / "validation" / "summary.json").unlink()
    assert main(["992", configuration, target, "0", "--val_only", "--device", "cpu"]) == 0
    assert (fold / "validation" / "summary.json").is_file()
    assert "full-volume validation" in (fold / "training_log.txt").read_text()
