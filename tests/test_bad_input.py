"""Damaged inputs through the commands, as a user meets them (issue 17, 'silent zeros' and checkpoints).

Each test creates one fault on tiny data and checks that the command exits with code 2, prints
``error: ...`` naming the file and a ``hint: ...`` (no traceback), and leaves no output behind. Before
the checked reader, a truncated .nii.gz was zero-filled and NaN/Inf became 0, so synth_predict,
synth_evaluate and preprocessing with --skip_validation wrote wrong results with exit code 0.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from synthetic_raw import make_tiny_raw_dataset
from synthunet.cli_support import run_cli
from synthunet.dataset.image_io import read_image, write_image
from synthunet.errors import CaseError, InputError
from synthunet.evaluation.cli import evaluate_main
from synthunet.fingerprint.cli import main as fingerprint_main
from synthunet.inference.case_preprocessing import PlansPreprocessing
from synthunet.inference.cli import main as predict_main
from synthunet.inference.testing import write_model_folder
from synthunet.planning.cli import main as plan_main
from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main
from synthunet.preprocessing.cli import main as preprocess_main
from test_evaluation_folders import make_raw
from test_predict_pipeline import raw_input_folder

IMAGE_FAULTS = ("truncated", "nan", "inf", "huge")


def damage(path: Path, fault: str) -> None:
    """Damage a valid image file in place."""
    if fault == "truncated":  # an interrupted copy: two thirds of the compressed stream
        content = path.read_bytes()
        path.write_bytes(content[: len(content) * 2 // 3])
    elif fault in ("nan", "inf"):
        array, geometry = read_image(path)
        array[array.shape[0] // 2, array.shape[1] // 2, array.shape[2] // 2] = np.nan if fault == "nan" else np.inf
        write_image(array, geometry, path)
    elif fault == "huge":  # a header claiming 2000^3 float32 voxels
        header = nibabel.Nifti1Header()
        header.set_data_shape((2000, 2000, 2000))
        header.set_data_dtype(np.float32)
        header.set_data_offset(352)
        path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 4096))
    elif fault == "uncompressed":  # the same image, written without compression under the .nii.gz name
        array, geometry = read_image(path)
        plain = path.with_name("plain.nii")
        write_image(array, geometry, plain, compress=False)
        plain.replace(path)
    else:
        raise AssertionError(fault)


PHRASES = {"truncated": "truncated", "nan": "NaN", "inf": "Inf", "huge": "more than synthUNet reads"}


def assert_refused(code: int, stderr: str, path: Path, phrase: str = "") -> None:
    """Exit code 2, one 'error:' line naming the file (and ``phrase``), a hint, no traceback."""
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and str(path) in errors[0] and phrase in errors[0], stderr
    assert lines[-1].startswith("hint: ") and "Traceback" not in stderr, stderr
    assert "weights_only" not in stderr


def no_images(folder: Path) -> bool:
    """Nothing written: no image and no temporary file anywhere under ``folder``."""
    return not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()
                                       and (p.name.endswith((".nii.gz", ".nii")) or p.name.startswith(".tmp_"))]


# ------------------------------------------------------------------------------------------- synth_predict


@pytest.fixture
def predict_setup(tmp_path, monkeypatch):
    results = tmp_path / "results" / "Dataset999_Fake"
    model = write_model_folder(results, "T1C", folds=(0,))
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)
    inputs = raw_input_folder(tmp_path / "in", cases=("c1", "c2"))
    output = tmp_path / "out"
    argv = ["-i", str(inputs), "-o", str(output), "-d", "999", "--device", "cpu", "--disable_tta", "-npp", "0",
            "-nps", "0"]
    return model, inputs, output, argv


@pytest.mark.parametrize("fault", IMAGE_FAULTS)
def test_predict_refuses_a_damaged_input(predict_setup, capsys, fault):
    _, inputs, output, argv = predict_setup
    broken = inputs / "c1_0002.nii.gz"
    damage(broken, fault)
    assert_refused(predict_main(argv), capsys.readouterr().err, broken, PHRASES[fault])
    assert no_images(output)


def test_predict_reads_an_uncompressed_file_named_nii_gz(predict_setup, capsys):
    """Decided: compression is recognised by content, so such a file is read (as SimpleITK does)."""
    _, inputs, output, argv = predict_setup
    assert predict_main(argv) == 0, capsys.readouterr().err
    expected = read_image(output / "c1_0001.nii.gz")[0]
    original = read_image(inputs / "c1_0002.nii.gz")[0]
    damage(inputs / "c1_0002.nii.gz", "uncompressed")
    assert (inputs / "c1_0002.nii.gz").read_bytes()[:2] != b"\x1f\x8b"
    np.testing.assert_array_equal(read_image(inputs / "c1_0002.nii.gz")[0], original)
    assert predict_main([*argv[:3], str(output.with_name("out2")), *argv[4:]]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read_image(output.with_name("out2") / "c1_0001.nii.gz")[0], expected)


class _Executes:
    """Unpickling this would create ``marker`` (what a malicious checkpoint could do with any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_bad_checkpoint(path: Path, kind: str, tmp_path: Path) -> str:
    """Replace a checkpoint by a faulty one; return a phrase its error must contain."""
    good = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return "corrupt"
    if kind == "empty":
        path.write_bytes(b"")
        return "empty"
    if kind == "text":
        path.write_text("not a checkpoint\n" * 20)
        return "not"
    if kind == "malicious":
        torch.save({"network_weights": _Executes(tmp_path / "executed")}, path)
        return "never runs code"
    if kind == "not_synthunet":
        torch.save({"model": {"weight": torch.zeros(3)}}, path)
        return "network_weights"
    if kind == "other_network":
        torch.save({"network_weights": {"conv.weight": torch.zeros(2, 2)}}, path)
        return "does not fit"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "malicious", "not_synthunet", "other_network"])
def test_predict_refuses_a_bad_checkpoint(predict_setup, capsys, tmp_path, kind):
    model, _, output, argv = predict_setup
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    phrase = write_bad_checkpoint(checkpoint, kind, tmp_path)
    assert_refused(predict_main(argv), capsys.readouterr().err, checkpoint, phrase)
    assert not (tmp_path / "executed").exists()  # weights_only: the content was never executed
    assert no_images(output)


def test_a_bug_inside_a_command_keeps_its_traceback(predict_setup, monkeypatch):
    """A programming error (here a KeyError in the preprocessing) is not turned into 'error: ...'."""
    _, _, output, argv = predict_setup

    def broken(self, images, geometry):
        raise KeyError("a bug")

    monkeypatch.setattr(PlansPreprocessing, "preprocess", broken)
    with pytest.raises(KeyError, match="a bug") as caught:
        predict_main(argv)
    assert any("case c1" in note for note in getattr(caught.value, "__notes__", ["case c1"]))


def test_run_cli_separates_user_errors_from_bugs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)

    def user_error():
        raise InputError("--foo must be positive", hint="pass --foo 1")

    assert run_cli(user_error) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --foo must be positive", "hint: pass --foo 1"]

    def os_error():
        (tmp_path / "file").write_text("")
        (tmp_path / "file" / "sub").mkdir()

    assert run_cli(os_error) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'file' / 'sub'}: ") and "\nhint: " in err
    for bug in (KeyError("k"), ValueError("v"), TypeError("t"), IndexError("i")):
        def action(bug=bug):
            raise bug
        with pytest.raises(type(bug)):
            run_cli(action)
    monkeypatch.setenv("SYNTHUNET_DEBUG", "1")
    with pytest.raises(CaseError):
        run_cli(lambda: (_ for _ in ()).throw(CaseError("Case x: broken")))


# ------------------------------------------------------------------------------------------ synth_evaluate


@pytest.mark.parametrize("fault,which", [("truncated", "prediction"), ("nan", "prediction"),
                                         ("inf", "reference"), ("huge", "reference")])
def test_evaluate_refuses_a_damaged_image(tmp_path, capsys, monkeypatch, fault, which):
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a", "case_b"))
    broken = (predictions if which == "prediction" else images) / "case_b_0001.nii.gz"
    damage(broken, fault)
    output = tmp_path / "evaluation"
    code = evaluate_main(["-ref", str(images), "-pred", str(predictions), "-l", str(labels), "--dataset_json",
                          str(dataset_json), "-o", str(output), "--quiet"])
    assert_refused(code, capsys.readouterr().err, broken, PHRASES[fault])
    assert not output.exists() or not any(output.iterdir())


# ------------------------------------------------------------------------------------------- preprocessing


@pytest.fixture
def raw_dataset(tmp_path, monkeypatch):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)
    return make_tiny_raw_dataset(tmp_path / "raw" / "Dataset981_Bad", n_cases=3, shape=(20, 22, 20), seed=3)


@pytest.mark.parametrize("fault", ["truncated", "nan", "huge"])
def test_plan_and_preprocess_skip_validation_refuses_a_damaged_case(raw_dataset, tmp_path, capsys, fault):
    broken = raw_dataset / "imagesTr" / "case_001_0002.nii.gz"
    damage(broken, fault)
    code = plan_and_preprocess_main(["-d", "981", "-np", "1", "--skip_validation", "--cpu_gflops", "40",
                                     "-c", "3d_fullres", "--no_progress"])
    assert_refused(code, capsys.readouterr().err, broken, PHRASES[fault])
    preprocessed = tmp_path / "preprocessed" / raw_dataset.name
    assert not list(preprocessed.rglob("case_001*")) and not list(preprocessed.rglob(".tmp_*"))


def test_skip_validation_refuses_a_case_without_brain(raw_dataset, tmp_path, capsys):
    """An empty brain (all-zero mask, or every channel zero) names the case instead of a raw traceback."""
    masks = raw_dataset / "masksTr"
    if (masks / "case_001.nii.gz").is_file():
        array, geometry = read_image(masks / "case_001.nii.gz")
        write_image(np.zeros_like(array), geometry, masks / "case_001.nii.gz")
    else:
        for path in (raw_dataset / "imagesTr").glob("case_001_*.nii.gz"):
            array, geometry = read_image(path)
            write_image(np.zeros_like(array), geometry, path)
    code = plan_and_preprocess_main(["-d", "981", "-np", "1", "--skip_validation", "--cpu_gflops", "40",
                                     "-c", "3d_fullres", "--no_progress"])
    err = capsys.readouterr().err
    assert code != 0 and "case_001" in err and "no brain voxel" in err and "Traceback" not in err


def test_preprocess_refuses_a_case_damaged_after_planning(raw_dataset, tmp_path, capsys):
    assert fingerprint_main(["-d", "981", "-np", "1", "--no_progress"]) == 0
    assert plan_main(["-d", "981", "--cpu_gflops", "40", "-c", "3d_fullres"]) == 0
    broken = raw_dataset / "imagesTr" / "case_002_0001.nii.gz"
    damage(broken, "truncated")
    assert_refused(preprocess_main(["-d", "981", "-np", "1", "--no_progress"]), capsys.readouterr().err, broken,
                   "truncated")
    preprocessed = tmp_path / "preprocessed" / raw_dataset.name
    assert not list(preprocessed.rglob("case_002*")) and not list(preprocessed.rglob(".tmp_*"))
    plans = json.loads((preprocessed / "synthUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"]
