"""synth_predict -num_parts N -part_id K: disjoint parts that together write what one run writes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthunet.errors import InputError
from synthunet.inference.best_configuration import inference_information_path
from synthunet.inference.cli import main as predict_main
from synthunet.inference.parts import check_part, select_part
from synthunet.inference.testing import write_model_folder

from test_predict_pipeline import raw_input_folder

CASES = ("c3", "c1", "c5", "c2", "c4")
DATASET = "Dataset999_Fake"


def test_select_part_is_strided_over_the_sorted_cases():
    assert select_part(CASES, 2, 0) == ["c1", "c3", "c5"]
    assert select_part(CASES, 2, 1) == ["c2", "c4"]
    assert select_part(CASES, 1, 0) == sorted(CASES)
    assert select_part(CASES, 7, 6) == []
    for n in (1, 2, 3, 5, 6):
        parts = [select_part(CASES, n, k) for k in range(n)]
        assert sorted(c for part in parts for c in part) == sorted(CASES)  # every case once
    for num_parts, part_id in ((0, 0), (2, 2), (2, -1), (-1, 0)):
        with pytest.raises(InputError, match="num_parts|part_id"):
            check_part(num_parts, part_id)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_model_folder(results / DATASET, "T1C", folds=(0,))
    monkeypatch.setenv("synthUNet_results", str(results))
    return raw_input_folder(tmp_path / "in", cases=CASES), results


def run(inputs: Path, output: Path, *extra: str) -> int:
    return predict_main(["-i", str(inputs), "-o", str(output), "-d", "999", "--device", "cpu", "--disable_tta",
                         "-npp", "0", "-nps", "0", *extra])


@pytest.mark.parametrize("spelling", [("-num_parts", "-part_id"), ("--num_parts", "--part_id")])
def test_parts_together_write_what_one_run_writes(tmp_path, setup, spelling):
    inputs, _ = setup
    assert run(inputs, tmp_path / "all") == 0
    everything = files(tmp_path / "all")
    assert sorted(everything) == [f"{c}_0001.nii.gz" for c in sorted(CASES)]
    parts = []
    for k in range(2):
        assert run(inputs, tmp_path / f"part{k}", spelling[0], "2", spelling[1], str(k)) == 0
        parts.append(files(tmp_path / f"part{k}"))
    assert sorted(parts[0]) == ["c1_0001.nii.gz", "c3_0001.nii.gz", "c5_0001.nii.gz"]
    assert sorted(parts[1]) == ["c2_0001.nii.gz", "c4_0001.nii.gz"]
    assert not set(parts[0]) & set(parts[1])
    assert {**parts[0], **parts[1]} == everything  # byte-identical

    # the usual use: every part writes into the same output folder
    for k in range(2):
        assert run(inputs, tmp_path / "shared", spelling[0], "2", spelling[1], str(k)) == 0
    assert files(tmp_path / "shared") == everything


def test_part_options_are_checked(tmp_path, setup, capsys):
    inputs, _ = setup
    for options, message in ((("-num_parts", "2", "-part_id", "2"), "-part_id must be between 0 and"),
                             (("-num_parts", "0"), "-num_parts must be at least 1"),
                             (("-part_id", "-1"), "-part_id must be between 0 and")):
        assert run(inputs, tmp_path / "out", *options) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert run(inputs, tmp_path / "out", "-num_parts", "9", "-part_id", "8") == 0  # an empty part writes nothing
    assert files(tmp_path / "out") == {}


def test_parts_with_configuration_best(tmp_path, setup):
    inputs, results = setup
    information = {"target": "T1C", "best": {"model_folders": ["SynthTrainer__synthUNetPlans__3d_fullres__T1C"],
                                             "configurations": ["3d_fullres"], "folds": [0]}}
    inference_information_path(results / DATASET, "T1C").write_text(json.dumps(information))
    assert run(inputs, tmp_path / "all", "-c", "best") == 0
    part = tmp_path / "part1"
    assert run(inputs, part, "-c", "best", "-num_parts", "2", "-part_id", "1") == 0
    assert sorted(files(part)) == ["c2_0001.nii.gz", "c4_0001.nii.gz"]
    assert all(files(tmp_path / "all")[name] == data for name, data in files(part).items())
