"""splits_final.json: seeded, reproducible, shared by every trainer and target; user files respected."""
from __future__ import annotations

import json

import pytest

from synthunet.training.experiment import Experiment, ExperimentError
from synthunet.training.splits import SplitsError, load_or_create_splits, make_splits, validate_splits
from test_training_fixtures import DATASET, prepare

CASES = [f"c{i:02d}" for i in range(12)]


def test_make_splits_is_a_reproducible_partition():
    splits = make_splits(CASES)
    assert splits == make_splits(list(reversed(CASES)))  # order of the input does not matter
    assert len(splits) == 5
    vals = [c for fold in splits for c in fold["val"]]
    assert sorted(vals) == CASES  # every case validated exactly once
    assert sorted(len(f["val"]) for f in splits) == [2, 2, 2, 3, 3]
    for fold in splits:
        assert set(fold["train"]).isdisjoint(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == CASES
    assert make_splits(CASES, seed=1) != splits


def test_too_few_cases():
    with pytest.raises(SplitsError, match="at least 5 cases"):
        make_splits(CASES[:3])


def test_file_written_once_and_reused(tmp_path):
    first = load_or_create_splits(tmp_path, CASES)
    path = tmp_path / "splits_final.json"
    assert json.loads(path.read_text()) == first
    custom = [{"train": CASES[2:], "val": CASES[:2]}, {"train": CASES[:10], "val": CASES[10:]}]
    path.write_text(json.dumps(custom))
    assert load_or_create_splits(tmp_path, CASES) == custom  # a user file is respected as it is


def test_user_file_is_validated(tmp_path):
    with pytest.raises(SplitsError, match="not in the preprocessed data"):
        validate_splits([{"train": ["c00", "ghost"], "val": ["c01"]}], CASES)
    with pytest.raises(SplitsError, match="both in train and val"):
        validate_splits([{"train": ["c00", "c01"], "val": ["c01"]}], CASES)
    with pytest.raises(SplitsError, match="lists 'train' and 'val'"):
        validate_splits([{"training": CASES}], CASES)
    (tmp_path / "splits_final.json").write_text("{not json")
    with pytest.raises(SplitsError, match="not valid JSON"):
        load_or_create_splits(tmp_path, CASES)


def test_every_trainer_and_target_gets_the_same_folds(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch, n_cases=6)
    a = Experiment.resolve(990, "3d_fullres", "T1C", 0, trainer_name="SynthTrainer")
    b = Experiment.resolve(990, "2.5d", "t2f", 0, trainer_name="SynthTrainer_GAN")
    assert a.fold_cases() == b.fold_cases()
    assert b.target == "T2F" and b.inputs == ["T1N", "T1C", "T2W"]
    assert (tmp_path / "preprocessed" / DATASET / "splits_final.json").is_file()
    with pytest.raises(ExperimentError, match="Fold 5 does not exist"):
        Experiment.resolve(990, "3d_fullres", "T1C", 5)
    everything = Experiment.resolve(990, "3d_fullres", "T1C", "all")
    assert everything.fold_cases()[0] == everything.fold_cases()[1] == everything.case_ids
