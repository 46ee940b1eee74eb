"""The three commands end to end on a tiny raw dataset, as a user runs them:
synth_plan_and_preprocess -> synth_train (two targets, the planner's CPU schedule) -> synth_predict on a
BraSyn-style folder where each case misses a different sequence -> synth_evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from synthetic_raw import make_tiny_raw_dataset
from synthunet.evaluation.cli import evaluate_main
from synthunet.inference.cli import main as predict_main
from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main
from synthunet.training.cli import main as train_main
from test_training_fixtures import single_thread  # noqa: F401 (fixture)

DATASET = "Dataset993_Commands"
CHANNELS = ["T1N", "T1C", "T2W", "T2F"]


@pytest.mark.usefixtures("single_thread")
def test_plan_train_predict_evaluate(tmp_path, monkeypatch):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    raw = tmp_path / "raw" / DATASET
    make_tiny_raw_dataset(raw, n_cases=10, shape=(24, 28, 26), seed=4)

    # a fixed probe speed keeps the plans reproducible; a few seconds of CPU training per fold
    assert plan_and_preprocess_main(["-d", "993", "-np", "1", "--cpu_gflops", "40", "--cpu_training_minutes", "0.05",
                                     "-c", "3d_fullres", "2.5d", "--no_progress"]) == 0
    plans = json.loads((tmp_path / "preprocessed" / DATASET / "synthUNetPlans.json").read_text())
    assert {"3d_fullres", "2.5d"} <= set(plans["configurations"])
    assert plans["planned_for"]["device"] == "cpu"
    for target in ("T1C", "T2F"):
        assert train_main(["993", "3d_fullres", target, "0", "--device", "cpu"]) == 0

    # BraSyn-style input: fold 0's validation cases, each missing one sequence (T1C or T2F, alternating)
    splits = json.loads((tmp_path / "preprocessed" / DATASET / "splits_final.json").read_text())
    cases = sorted(splits[0]["val"])
    missing = {case: ("t1c", "t2f")[i % 2] for i, case in enumerate(cases)}
    assert set(missing.values()) == {"t1c", "t2f"}
    brasyn = tmp_path / "brasyn"
    for case in cases:
        (brasyn / case).mkdir(parents=True)
        for index, channel in enumerate(CHANNELS):
            if channel.lower() != missing[case]:
                source = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_{index:04d}.nii.gz"))
                sitk.WriteImage(source, str(brasyn / case / f"{case}-{channel.lower()}.nii.gz"))
    output = tmp_path / "predicted"
    assert predict_main(["-i", str(brasyn), "-o", str(output), "-d", "993", "-c", "3d_fullres", "-f", "0",
                         "--disable_tta", "-npp", "0", "-nps", "0"]) == 0
    assert sorted(p.name for p in output.glob("*.nii.gz")) == sorted(f"{c}-{missing[c]}.nii.gz" for c in cases)
    for case in cases:
        reference = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        predicted = sitk.ReadImage(str(output / f"{case}-{missing[case]}.nii.gz"))
        assert predicted.GetSize() == reference.GetSize()
        assert predicted.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert predicted.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert predicted.GetDirection() == pytest.approx(reference.GetDirection())
        array = sitk.GetArrayFromImage(predicted)
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "masksTr" / f"{case}.nii.gz"))) > 0
        assert array.dtype == np.float32 and array.min() >= 0 and (array[~brain] == 0).all()
        assert array[brain].std() > 0

    summary_file = tmp_path / "evaluation" / "summary.json"
    assert evaluate_main(["-ref", str(raw / "imagesTr"), "-pred", str(output), "-d", "993", "-l",
                          str(raw / "labelsTr"), "-m", str(raw / "masksTr"), "--cases", *cases,
                          "--allow_missing", "-o", str(summary_file), "--quiet"]) == 0  # one target per case
    summary = json.loads(summary_file.read_text())
    assert sorted(summary["targets"]) == sorted({m.upper() for m in missing.values()})
