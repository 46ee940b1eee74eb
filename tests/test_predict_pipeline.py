"""SynthPredictor and synth_predict end to end on fake model folders (tiny or constant networks)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from synthunet.dataset.image_io import Geometry, read_geometry, read_image
from synthunet.inference.case_preprocessing import IdentityPreprocessing
from synthunet.inference.cli import main as predict_main
from synthunet.inference.layout import InputLayoutError
from synthunet.inference.predictor import SynthPredictor
from synthunet.inference.testing import ChannelNetwork, ConstantNetwork, fake_plans, write_model_folder

SHAPE = (11, 17, 9)  # odd, z y x
SPACING_XYZ = (0.9, 1.2, 3.0)  # anisotropic
ORIGIN_XYZ = (-12.5, 40.25, 7.0)
_c, _s = np.cos(0.3), np.sin(0.3)
DIRECTION = (_c, -_s, 0.0, _s, _c, 0.0, 0.0, 0.0, 1.0)  # oblique: 0.3 rad about the scanner z axis
CONSTANTS = {0: 0.2, 1: 0.6}


def write_nifti(path: Path, array: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin(ORIGIN_XYZ)
    image.SetDirection(DIRECTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def brain_image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros(SHAPE, np.float32)
    image[2:-2, 3:-3, 2:-2] = 50 + 50 * rng.random((SHAPE[0] - 4, SHAPE[1] - 6, SHAPE[2] - 4))
    return image


def raw_input_folder(root: Path, cases=("c1", "c2"), channels=(0, 2, 3)) -> Path:
    for n, case in enumerate(cases):
        for channel in channels:
            write_nifti(root / f"{case}_{channel:04d}.nii.gz", brain_image(10 * n + channel))
    return root


def brats_input_folder(root: Path, cases: dict[str, tuple[str, ...]]) -> Path:
    for n, (case, sequences) in enumerate(cases.items()):
        for k, sequence in enumerate(sequences):
            write_nifti(root / case / f"{case}-{sequence}.nii.gz", brain_image(10 * n + k))
        write_nifti(root / case / f"{case}-seg.nii.gz", np.zeros(SHAPE))
    return root


def constant_loader(model, fold, checkpoint, device):
    return ConstantNetwork(CONSTANTS[fold])


def identity_predictor(folders, **kwargs) -> SynthPredictor:
    kwargs.setdefault("folds", [0, 1])
    kwargs.setdefault("network_loader", constant_loader)
    return SynthPredictor(folders, device="cpu", use_mirroring=False,
                          preprocessing_factory=lambda model: IdentityPreprocessing(model.inputs), **kwargs)


def input_geometry(folder: Path) -> Geometry:
    return read_geometry(next(folder.rglob("*_0000.nii.gz"), None) or next(folder.rglob("*-t1n.nii.gz")))[0]


@pytest.mark.parametrize("configuration,orientations", [("3d_fullres", 9), ("2.5d", 3)])
def test_fold_average_and_uncertainty(tmp_path, configuration, orientations):
    folder = write_model_folder(tmp_path / "results", "T1C", configuration, write_checkpoints=False)
    inputs = raw_input_folder(tmp_path / "in")
    predictor = identity_predictor([folder], orientations=orientations)
    written = predictor.predict_from_files(inputs, tmp_path / "out", save_uncertainty=True,
                                           num_processes_preprocessing=0, num_processes_export=0, progress=False)
    assert sorted(p.name for p in written) == ["c1_0001.nii.gz", "c2_0001.nii.gz"]
    prediction, _ = read_image(tmp_path / "out" / "c1_0001.nii.gz")
    uncertainty, _ = read_image(tmp_path / "out" / "c1_0001_uncertainty.nii.gz")
    brain = brain_image(0) > 0
    np.testing.assert_allclose(prediction[brain], (0.2 + 0.6) / 2, atol=1e-5)
    np.testing.assert_allclose(uncertainty[brain], abs(0.2 - 0.6) / 2, atol=1e-5)
    assert np.all(prediction[~brain] == 0) and np.all(uncertainty[~brain] == 0)


def test_written_geometry_is_the_input_geometry(tmp_path):
    folder = write_model_folder(tmp_path / "results", "T1C", write_checkpoints=False)
    inputs = raw_input_folder(tmp_path / "in", cases=("c1",))
    predictor = identity_predictor([folder], folds=[0], network_loader=lambda *a: ChannelNetwork(0))
    predictor.predict_from_files(inputs, tmp_path / "out", num_processes_preprocessing=0, num_processes_export=0,
                                 progress=False)
    written = sitk.ReadImage(str(tmp_path / "out" / "c1_0001.nii.gz"))
    source = sitk.ReadImage(str(inputs / "c1_0000.nii.gz"))
    assert written.GetSize() == source.GetSize() == SHAPE[::-1]
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), rtol=0, atol=1e-6)
    assert written.GetPixelIDValue() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(source), atol=1e-4)


@pytest.mark.parametrize("configuration", ["3d_fullres", "2.5d"])
def test_real_preprocessing_round_trip(tmp_path, configuration):
    """The preprocessing package's crop / resample / Nyúl and its reversal around an identity network."""
    plans = fake_plans(spacing=(2.0, 1.5, 1.5))  # resampling on every axis
    folder = write_model_folder(tmp_path / "results", "T1C", configuration, plans=plans, write_checkpoints=False)
    inputs = raw_input_folder(tmp_path / "in", cases=("c1",))
    k = plans["configurations"]["2.5d"]["num_slices"]
    channel = k // 2 if configuration == "2.5d" else 0
    predictor = SynthPredictor([folder], folds=[0], device="cpu", use_mirroring=False, orientations=1,
                               network_loader=lambda *a: ChannelNetwork(channel))
    predictor.predict_from_files(inputs, tmp_path / "out", num_processes_preprocessing=0, num_processes_export=0,
                                 progress=False)
    prediction, geometry = read_image(tmp_path / "out" / "c1_0001.nii.gz")
    assert not geometry.differences(input_geometry(inputs), tolerance=1e-6)
    assert prediction.dtype == np.float32 and prediction.shape == SHAPE
    assert prediction.min() >= 0
    brain = brain_image(0) > 0
    assert np.all(prediction[~brain] == 0)
    assert prediction[brain].mean() > 0


def test_brats_flat_and_subfolder_outputs(tmp_path):
    folders = [write_model_folder(tmp_path / "results", t, write_checkpoints=False) for t in ("T1C", "T2F")]
    inputs = brats_input_folder(tmp_path / "in", {"BraTS-GLI-00001-000": ("t1n", "t2w", "t2f"),
                                                  "BraTS-SSA-00002-000": ("t1n", "t1c", "t2w")})
    predictor = identity_predictor(folders)
    predictor.predict_from_files(inputs, tmp_path / "flat", num_processes_preprocessing=0, num_processes_export=0,
                                 progress=False)
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == [
        "BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-SSA-00002-000-t2f.nii.gz"]
    predictor.predict_from_files(inputs, tmp_path / "sub", brats_subfolders=True, num_processes_preprocessing=0,
                                 num_processes_export=0, progress=False)
    assert sorted(str(p.relative_to(tmp_path / "sub")) for p in (tmp_path / "sub").rglob("*.nii.gz")) == [
        "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-SSA-00002-000/BraTS-SSA-00002-000-t2f.nii.gz"]


def test_case_problems_are_reported_before_predicting(tmp_path):
    folder = write_model_folder(tmp_path / "results", "T1C", write_checkpoints=False)
    inputs = brats_input_folder(tmp_path / "in", {"BraTS-GLI-00001-000": ("t1n", "t2w", "t2f"),
                                                  "BraTS-GLI-00002-000": ("t1n", "t1c", "t2f")})
    predictor = identity_predictor([folder])
    with pytest.raises(InputLayoutError, match=r"BraTS-GLI-00002-000 misses T2W, but no model.*T1C"):
        predictor.predict_from_files(inputs, tmp_path / "out", num_processes_preprocessing=0,
                                     num_processes_export=0, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputLayoutError, match="BraTS-GLI-00002-000 lacks T2W, which the T1C model needs"):
        predictor.plan_cases(inputs, tmp_path / "out", target="T1C")


def test_continue_prediction_skips_finished_cases(tmp_path):
    folder = write_model_folder(tmp_path / "results", "T1C", write_checkpoints=False)
    inputs = raw_input_folder(tmp_path / "in")
    out = tmp_path / "out"
    identity_predictor([folder]).predict_from_files(inputs, out, num_processes_preprocessing=0,
                                                    num_processes_export=0, progress=False)
    first, second = out / "c1_0001.nii.gz", out / "c2_0001.nii.gz"
    os.utime(first, ns=(1, 1))
    second.unlink()
    written = identity_predictor([folder]).predict_from_files(inputs, out, continue_prediction=True,
                                                              num_processes_preprocessing=0,
                                                              num_processes_export=0, progress=False)
    assert written == [second]
    assert first.stat().st_mtime_ns == 1 and second.is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_background_processes(tmp_path):
    folder = write_model_folder(tmp_path / "results", "T1C", write_checkpoints=False)
    inputs = raw_input_folder(tmp_path / "in", cases=("c1", "c2", "c3"))
    predictor = SynthPredictor([folder], folds=[0, 1], device="cpu", use_mirroring=False,
                               network_loader=constant_loader, preprocessing_factory=_identity_factory)
    written = predictor.predict_from_files(inputs, tmp_path / "out", num_processes_preprocessing=1,
                                           num_processes_export=1, progress=False)
    assert len(written) == 3
    np.testing.assert_allclose(read_image(written[2])[0][brain_image(20) > 0], 0.4, atol=1e-6)


def _identity_factory(model):
    return IdentityPreprocessing(model.inputs)


def test_predict_from_arrays_detects_the_target(tmp_path):
    folders = [write_model_folder(tmp_path / "results", t, write_checkpoints=False) for t in ("T1C", "T2W")]
    predictor = identity_predictor(folders)
    geometry = Geometry(SPACING_XYZ, ORIGIN_XYZ, DIRECTION, SHAPE)
    images = {"t1n": brain_image(1), "T1C": brain_image(2), "T2F": brain_image(3)}
    prediction, uncertainty = predictor.predict_from_arrays(images, geometry, return_uncertainty=True)
    assert prediction.shape == SHAPE
    brain = brain_image(1) > 0
    np.testing.assert_allclose(prediction[brain], 0.4, atol=1e-6)
    np.testing.assert_allclose(uncertainty[brain], 0.2, atol=1e-6)
    with pytest.raises(InputLayoutError, match="misses 2 sequences"):
        predictor.predict_from_arrays({"T1N": brain_image(1), "T2F": brain_image(3)}, geometry)


def test_cli_with_trained_checkpoints(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results" / "Dataset999_Fake"
    write_model_folder(results, "T1C", folds=(0, 1))
    inputs = brats_input_folder(tmp_path / "in", {"BraTS-GLI-00001-000": ("t1n", "t2w", "t2f")})
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    code = predict_main(["-i", str(inputs), "-o", str(tmp_path / "out"), "-d", "999", "--device", "cpu",
                         "--disable_tta", "-npp", "0", "-nps", "0", "--save_uncertainty"])
    assert code == 0, capsys.readouterr().err
    prediction, geometry = read_image(tmp_path / "out" / "BraTS-GLI-00001-000-t1c.nii.gz")
    assert not geometry.differences(input_geometry(inputs), tolerance=1e-6)
    assert prediction.min() >= 0 and np.isfinite(prediction).all()
    assert (tmp_path / "out" / "BraTS-GLI-00001-000-t1c_uncertainty.nii.gz").is_file()

    code = predict_main(["-i", str(inputs), "-o", str(tmp_path / "out2"), "-d", "999", "--device", "cpu",
                         "-c", "2.5d"])
    assert code == 2
    assert "No trained model SynthTrainer__synthUNetPlans__2.5d__TARGET" in capsys.readouterr().err
    code = predict_main(["-i", str(inputs), "-o", str(tmp_path / "out3"), "-d", "999", "--device", "cpu",
                         "-f", "3"])
    assert code == 2
    assert "no checkpoint_final.pth for fold(s) 3 (available: 0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("fixed,expected", [((), 0.2), (("folds",), 0.4)])
def test_a_time_budget_drops_folds_unless_the_folds_are_fixed(tmp_path, monkeypatch, fixed, expected):
    import synthunet.inference.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "seconds_per_window", lambda *args, **kwargs: 1.0)
    folder = write_model_folder(tmp_path / "results", "T1C", "3d_fullres", write_checkpoints=False)
    inputs = raw_input_folder(tmp_path / "in", cases=("c1",))
    messages = []
    predictor = identity_predictor([folder], time_budget_s=1.5, fixed=fixed, report=messages.append)
    predictor.use_mirroring = True  # the budget may switch mirroring off (not fixed here)
    predictor.predict_from_files(inputs, tmp_path / "out", num_processes_preprocessing=0, num_processes_export=0,
                                 progress=False)
    prediction, _ = read_image(tmp_path / "out" / "c1_0001.nii.gz")
    brain = brain_image(0) != 0
    np.testing.assert_allclose(prediction[brain], expected, rtol=1e-5)
    assert len(messages) == 1 and "time budget 2 s per case ->" in messages[0]
    assert "mirroring off" in messages[0]
    assert ("fold(s) 0, mirroring" in messages[0]) == (expected == 0.2)


def test_a_generous_budget_keeps_the_full_setting_and_says_so(tmp_path, monkeypatch):
    import synthunet.inference.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "seconds_per_window", lambda *args, **kwargs: 1e-3)
    folder = write_model_folder(tmp_path / "results", "T1C", "3d_fullres", write_checkpoints=False)
    messages = []
    predictor = identity_predictor([folder], time_budget_s=300, report=messages.append)
    predictor.predict_from_files(raw_input_folder(tmp_path / "in", cases=("c1",)), tmp_path / "out",
                                 num_processes_preprocessing=0, num_processes_export=0, progress=False)
    prediction, _ = read_image(tmp_path / "out" / "c1_0001.nii.gz")
    np.testing.assert_allclose(prediction[brain_image(0) != 0], 0.4, rtol=1e-5)  # both folds
    assert messages == [messages[0]] and "fold(s) 0, 1" in messages[0] and "step 0.5" in messages[0]
    assert "within the time budget of 300 s" in messages[0]


def test_synth_predict_flags_fix_what_the_budget_may_change():
    from synthunet.inference.cli import build_parser, fixed_settings, time_budget

    parse = build_parser().parse_args
    base = ["-i", "in", "-o", "out", "-d", "501", "--device", "cpu"]
    assert fixed_settings(parse(base)) == []
    assert fixed_settings(parse(base + ["-f", "0", "--disable_tta", "--orientations", "3", "--step_size", "0.5"])) == [
        "folds", "mirroring", "orientations", "step_size"]
    assert time_budget(parse(base)) == 300.0
    assert time_budget(parse(base + ["--time_budget_s", "0"])) is None
    assert time_budget(parse(base + ["--time_budget_s", "60"])) == 60.0
