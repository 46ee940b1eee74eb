"""Missing-input cascade (seed 001, section IV-E) with two tiny trained models:
A predicts T1C from (T1N, T2W), B predicts T2W from T1N. A case with only T1N and T2F needs B first."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from synthetic_raw import make_tiny_raw_dataset
from synthunet.inference.cli import main as predict_main
from synthunet.inference.layout import InputLayoutError
from synthunet.inference.predictor import SynthPredictor
from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main
from synthunet.training.cli import main as train_main
from test_training_fixtures import single_thread  # noqa: F401 (fixture)

DATASET = "Dataset994_Cascade"
CHANNELS = ["T1N", "T1C", "T2W", "T2F"]


@pytest.mark.usefixtures("single_thread")
def test_cascade_fills_missing_input(tmp_path, monkeypatch, capsys):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    raw = tmp_path / "raw" / DATASET
    make_tiny_raw_dataset(raw, n_cases=6, shape=(20, 24, 22), seed=5)
    assert plan_and_preprocess_main(["-d", "994", "-np", "1", "--cpu_gflops", "40", "--cpu_training_minutes", "0.02",
                                     "-c", "3d_fullres", "--no_progress", "--no_gpu_plans"]) == 0
    common = ["0", "--device", "cpu", "--epochs", "1", "--skip_final_validation"]
    assert train_main(["994", "3d_fullres", "T1C", *common, "--inputs", "T1N", "T2W"]) == 0
    assert train_main(["994", "3d_fullres", "T2W", *common, "--inputs", "T1N"]) == 0
    results = tmp_path / "results" / DATASET
    model_a = results / "SynthTrainer__synthUNetPlans__3d_fullres__T1C"
    model_b = results / "SynthTrainer__synthUNetPlans__3d_fullres__T2W"

    case = sorted(p.name for p in (raw / "imagesTr").glob("*_0000.nii.gz"))[0][:-len("_0000.nii.gz")]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index, channel in enumerate(CHANNELS):
        if channel in ("T1N", "T2F"):
            sitk.WriteImage(sitk.ReadImage(str(raw / "imagesTr" / f"{case}_{index:04d}.nii.gz")),
                            str(inputs / f"{case}_{index:04d}.nii.gz"))

    # without --cascade: a clear error naming the missing input and the model that would fill it
    predictor = SynthPredictor([model_a], folds=[0], device="cpu", use_mirroring=False, cascade_models=[model_b])
    with pytest.raises(InputLayoutError, match=r"lacks T2W.*T2W can be synthesised first by .*__T2W.*--cascade"):
        predictor.plan_cases(inputs, tmp_path / "out", target="T1C")
    args = ["-i", str(inputs), "-d", "994", "-c", "3d_fullres", "-f", "0", "--disable_tta", "-npp", "0", "-nps", "0"]
    assert predict_main([*args, "-o", str(tmp_path / "plain")]) != 0  # auto target, two sequences missing
    message = capsys.readouterr()
    assert "T2W" in message.out + message.err and "--cascade" in message.out + message.err

    # with --cascade: T2W from B in memory, then T1C from A; only T1C is written
    assert predict_main([*args, "-o", str(tmp_path / "cascade"), "--cascade"]) == 0
    written = sorted(p.name for p in (tmp_path / "cascade").iterdir())
    assert written == [f"{case}_0001.nii.gz"]

    # the same as running the two steps by hand
    assert predict_main([*args, "-o", str(tmp_path / "step1"), "--target", "T2W"]) == 0
    step2 = tmp_path / "step2_inputs"
    step2.mkdir()
    for path in list(inputs.iterdir()) + list((tmp_path / "step1").iterdir()):
        sitk.WriteImage(sitk.ReadImage(str(path)), str(step2 / path.name))
    assert predict_main([*args[:1], str(step2), *args[2:], "-o", str(tmp_path / "step2"), "--target", "T1C"]) == 0
    cascade = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cascade" / f"{case}_0001.nii.gz")))
    by_hand = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "step2" / f"{case}_0001.nii.gz")))
    assert cascade.shape == by_hand.shape
    np.testing.assert_allclose(cascade, by_hand, rtol=1e-3, atol=1e-3 * float(np.abs(by_hand).max() + 1))
