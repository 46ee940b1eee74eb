"""Raw format: dataset.json parsing, id resolution, the validator and the BraTS converter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from synthunet import paths
from synthunet.dataset.convert_brats import convert_brats
from synthunet.dataset.dataset_json import load_dataset_json, split_image_file_name
from synthunet.dataset.identifiers import DatasetNotFoundError, resolve_dataset_name
from synthunet.dataset.validate import main as validate_main
from synthunet.dataset.validate import validate_dataset

SHAPE = (11, 12, 13)  # z, y, x: at least the 11-voxel SSIM window along every axis


def write(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def make_dataset(folder: Path, n_cases: int = 2, channels=("T1N", "T1C"), ending=".nii.gz") -> Path:
    rng = np.random.default_rng(0)
    for case in range(n_cases):
        for channel in range(len(channels)):
            write(folder / "imagesTr" / f"case{case}_{channel:04d}{ending}", rng.random(SHAPE).astype(np.float32))
        write(folder / "labelsTr" / f"case{case}{ending}", rng.integers(0, 4, SHAPE).astype(np.uint8))
        write(folder / "masksTr" / f"case{case}{ending}", np.ones(SHAPE, np.uint8))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): c for i, c in enumerate(channels)}, "file_ending": ending,
        "numTraining": n_cases, "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3}}))
    return folder


def test_valid_dataset_has_no_problems(tmp_path):
    assert validate_dataset(make_dataset(tmp_path / "Dataset001_A"), progress=False) == []


@pytest.mark.parametrize("ending", [".nii", ".mha", ".nrrd"])
def test_other_file_types_are_valid(tmp_path, ending):
    assert validate_dataset(make_dataset(tmp_path / "D", ending=ending), progress=False) == []


def _problems_after(tmp_path, damage) -> list[str]:
    folder = make_dataset(tmp_path / "D")
    damage(folder)
    return validate_dataset(folder, progress=False)


def _one(problems: list[str], *needles: str) -> None:
    hits = [p for p in problems if all(n in p for n in needles)]
    assert hits, f"no problem mentions {needles}: {problems}"


def test_schema_problems_are_all_listed(tmp_path):
    def damage(folder):
        (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1N", "2": "T1C"},
                                                         "file_ending": ".png", "numTraining": 0}))
    problems = _problems_after(tmp_path, damage)
    text = "\n".join(problems)
    assert "without gaps" in text and "file_ending" in text and "numTraining" in text


def test_missing_channel(tmp_path):
    problems = _problems_after(tmp_path, lambda f: (f / "imagesTr" / "case1_0001.nii.gz").unlink())
    _one(problems, "case1", "missing channel", "0001")


@pytest.mark.parametrize("kwargs,needle", [({"spacing": (1.0, 1.0, 2.0)}, "spacing"),
                                           ({"origin": (5.0, 0.0, 0.0)}, "origin"),
                                           ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, "direction")])
def test_geometry_mismatch(tmp_path, kwargs, needle):
    problems = _problems_after(tmp_path, lambda f: write(f / "imagesTr" / "case0_0001.nii.gz",
                                                         np.zeros(SHAPE, np.float32), **kwargs))
    _one(problems, "case0", "case0_0001.nii.gz", needle)


def test_shape_mismatch_and_nan_reported_together(tmp_path):
    def damage(folder):
        write(folder / "imagesTr" / "case0_0001.nii.gz", np.zeros((6, 7, 9), np.float32))
        bad = np.zeros(SHAPE, np.float32)
        bad[0, 0, 0] = np.nan
        write(folder / "imagesTr" / "case1_0000.nii.gz", bad)
    problems = _problems_after(tmp_path, damage)
    _one(problems, "case0_0001", "shape")
    _one(problems, "case1_0000", "NaN")


def test_2d_image(tmp_path):
    problems = _problems_after(tmp_path, lambda f: write(f / "imagesTr" / "case0_0000.nii.gz",
                                                         np.zeros((7, 8), np.float32), spacing=(1.0, 1.0)))
    _one(problems, "case0_0000", "2D")


def test_label_problems(tmp_path):
    def damage(folder):
        write(folder / "labelsTr" / "case0.nii.gz", np.full(SHAPE, 7, np.uint8))
        write(folder / "labelsTr" / "case1.nii.gz", np.full(SHAPE, 0.5, np.float32))
    problems = _problems_after(tmp_path, damage)
    _one(problems, "case0.nii.gz", "not declared")
    _one(problems, "case1.nii.gz", "not integers")


def test_missing_label_and_mask_values(tmp_path):
    def damage(folder):
        (folder / "labelsTr" / "case0.nii.gz").unlink()
        write(folder / "masksTr" / "case1.nii.gz", np.full(SHAPE, 2, np.uint8))
    problems = _problems_after(tmp_path, damage)
    _one(problems, "case0", "no label file")
    _one(problems, "case1.nii.gz", "0 and 1")


def test_bad_name_and_count(tmp_path):
    def damage(folder):
        write(folder / "imagesTr" / "case2_T1.nii.gz", np.zeros(SHAPE, np.float32))
    problems = _problems_after(tmp_path, damage)
    _one(problems, "case2_T1.nii.gz", "does not match")


def test_validator_cli_exit_codes(tmp_path, capsys):
    folder = make_dataset(tmp_path / "Dataset003_Ok")
    assert validate_main(["-d", str(folder), "-np", "1"]) == 0
    (folder / "imagesTr" / "case0_0000.nii.gz").unlink()
    assert validate_main(["-d", str(folder), "-np", "1"]) == 1
    assert "missing channel" in capsys.readouterr().err


def test_file_name_parsing():
    assert split_image_file_name("BraTS-GLI-00001-000_0003.nii.gz", ".nii.gz") == ("BraTS-GLI-00001-000", 3)
    assert split_image_file_name("case_1.nii.gz", ".nii.gz") is None
    assert split_image_file_name("case_0001.nii", ".nii.gz") is None


def test_dataset_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.RAW_ENV, raising=False)
    with pytest.raises(paths.PathNotConfiguredError, match="export synthUNet_raw="):
        paths.raw_folder()
    monkeypatch.setenv(paths.RAW_ENV, str(tmp_path))
    monkeypatch.delenv(paths.PREPROCESSED_ENV, raising=False)
    monkeypatch.delenv(paths.RESULTS_ENV, raising=False)
    (tmp_path / "Dataset042_Brains").mkdir()
    assert resolve_dataset_name(42) == "Dataset042_Brains"
    assert resolve_dataset_name("042") == "Dataset042_Brains"
    with pytest.raises(DatasetNotFoundError, match="Dataset043"):
        resolve_dataset_name(43)
    (tmp_path / "Dataset042_Other").mkdir()
    with pytest.raises(DatasetNotFoundError, match="ambiguous"):
        resolve_dataset_name(42)


def make_brats_folder(root: Path, prefix: str = "GLI") -> Path:
    rng = np.random.default_rng(1)
    for index, suffixes in enumerate([("t1n", "t1c", "t2w", "t2f", "seg"), ("t1n", "t1c", "t2w", "t2f", "seg"),
                                      ("t1n", "t2w", "t2f", "seg")]):
        case = f"BraTS-{prefix}-{index:05d}-000"
        for suffix in suffixes:
            array = rng.integers(0, 4, SHAPE).astype(np.uint8) if suffix == "seg" else rng.random(SHAPE).astype(np.float32)
            write(root / case / f"{case}-{suffix}.nii.gz", array, spacing=(1.0, 1.0, 1.5))
    return root


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_brats_conversion_round_trip(tmp_path, mode):
    brats = make_brats_folder(tmp_path / "brats", prefix="MEN")
    report = convert_brats(brats, 7, "Men", output_root=tmp_path / "raw", mode=mode, progress=False)
    assert report.converted == ["BraTS-MEN-00000-000", "BraTS-MEN-00001-000"]
    assert "t1c" in report.skipped["BraTS-MEN-00002-000"]
    folder = tmp_path / "raw" / "Dataset007_Men"
    assert validate_dataset(folder, progress=False) == []
    description = load_dataset_json(folder)
    assert description.channels == ["T1N", "T1C", "T2W", "T2F"] and description.num_training == 2
    for channel, suffix in enumerate(["t1n", "t1c", "t2w", "t2f"]):
        case = "BraTS-MEN-00001-000"
        original = sitk.GetArrayFromImage(sitk.ReadImage(str(brats / case / f"{case}-{suffix}.nii.gz")))
        converted = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(converted), original)
        assert converted.GetSpacing() == (1.0, 1.0, 1.5)
    assert not list((tmp_path / "raw").glob(".tmp_*"))
    with pytest.raises(FileExistsError):
        convert_brats(brats, 7, "Men", output_root=tmp_path / "raw", progress=False)
