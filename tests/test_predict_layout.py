"""Input layouts (raw, BraTS), missing-sequence detection and output naming for synth_predict."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthunet.dataset.dataset_json import DatasetDescription
from synthunet.inference.layout import (InputLayoutError, detect_layout, detect_target, list_input_cases,
                                        output_file_name, uncertainty_file_name)

DATASET = DatasetDescription(channel_names={0: "T1N", 1: "T1C", 2: "T2W", 3: "T2F"}, file_ending=".nii.gz",
                             num_training=1)
TRAINED = ["T1C", "T2F"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def brats_folder(root: Path, cases: dict[str, list[str]], flat: bool = False) -> Path:
    for case, sequences in cases.items():
        for sequence in sequences:
            touch(root / f"{case}-{sequence}.nii.gz" if flat else root / case / f"{case}-{sequence}.nii.gz")
    return root


def test_raw_layout(tmp_path):
    for case in ("a", "b"):
        for channel in (0, 2, 3):
            touch(tmp_path / f"{case}_{channel:04d}.nii.gz")
    assert detect_layout(tmp_path, DATASET) == "raw"
    layout, cases = list_input_cases(tmp_path, DATASET)
    assert [c.case_id for c in cases] == ["a", "b"]
    assert sorted(cases[0].files) == ["T1N", "T2F", "T2W"]
    assert detect_target(cases[0], DATASET, TRAINED) == "T1C"


def test_raw_layout_with_an_unknown_channel(tmp_path):
    touch(tmp_path / "a_0000.nii.gz")
    touch(tmp_path / "a_0007.nii.gz")
    with pytest.raises(InputLayoutError, match="0007"):
        list_input_cases(tmp_path, DATASET)


@pytest.mark.parametrize("flat", [False, True])
def test_brats_layout_ignores_seg(tmp_path, flat):
    brats_folder(tmp_path, {"BraTS-GLI-00001-000": ["t1n", "t2w", "t2f", "seg"],
                            "BraTS-MEN-00002-001": ["t1n", "t1c", "t2w"]}, flat=flat)
    layout, cases = list_input_cases(tmp_path, DATASET)
    assert layout == "brats"
    by_id = {c.case_id: c for c in cases}
    assert sorted(by_id["BraTS-GLI-00001-000"].files) == ["T1N", "T2F", "T2W"]
    assert [p.name for p in by_id["BraTS-GLI-00001-000"].ignored] == ["BraTS-GLI-00001-000-seg.nii.gz"]
    assert detect_target(by_id["BraTS-GLI-00001-000"], DATASET, TRAINED) == "T1C"
    assert detect_target(by_id["BraTS-MEN-00002-001"], DATASET, TRAINED) == "T2F"


def test_neither_layout_is_a_clear_error(tmp_path):
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "scan.nii.gz")
    with pytest.raises(InputLayoutError, match="neither a raw-format folder.*nor a BraTS folder"):
        detect_layout(tmp_path, DATASET)
    with pytest.raises(InputLayoutError, match="does not exist"):
        detect_layout(tmp_path / "missing", DATASET)


def test_mixed_layouts_are_an_error(tmp_path):
    touch(tmp_path / "a_0000.nii.gz")
    brats_folder(tmp_path, {"BraTS-GLI-00001-000": ["t1n"]})
    with pytest.raises(InputLayoutError, match="mixes"):
        detect_layout(tmp_path, DATASET)


def test_missing_sequence_errors_name_the_case(tmp_path):
    brats_folder(tmp_path, {"BraTS-GLI-00001-000": ["t1n", "t1c", "t2w", "t2f"],
                            "BraTS-GLI-00002-000": ["t1n", "t2w"],
                            "BraTS-GLI-00003-000": ["t1c", "t2w", "t2f"]})
    cases = {c.case_id: c for c in list_input_cases(tmp_path, DATASET)[1]}
    with pytest.raises(InputLayoutError, match="BraTS-GLI-00001-000 has every sequence"):
        detect_target(cases["BraTS-GLI-00001-000"], DATASET, TRAINED)
    with pytest.raises(InputLayoutError, match=r"BraTS-GLI-00002-000 misses 2 sequences \(T1C, T2F; it has T1N, T2W\)"):
        detect_target(cases["BraTS-GLI-00002-000"], DATASET, TRAINED)
    with pytest.raises(InputLayoutError, match=r"BraTS-GLI-00003-000 misses T1N, but no model.*T1C, T2F"):
        detect_target(cases["BraTS-GLI-00003-000"], DATASET, TRAINED)


def test_output_names():
    assert output_file_name("case_7", "T1C", "raw", DATASET) == "case_7_0001.nii.gz"
    assert output_file_name("BraTS-GLI-00001-000", "T1C", "brats", DATASET) == "BraTS-GLI-00001-000-t1c.nii.gz"
    assert output_file_name("BraTS-GLI-00001-000", "T2F", "brats", DATASET, brats_subfolders=True) == \
        "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2f.nii.gz"
    assert uncertainty_file_name("x/BraTS-GLI-00001-000-t1c.nii.gz") == "x/BraTS-GLI-00001-000-t1c_uncertainty.nii.gz"
    assert uncertainty_file_name("case_7_0001.nii.gz") == "case_7_0001_uncertainty.nii.gz"
