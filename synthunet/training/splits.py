"""Five-fold cross-validation splits shared by every trainer and target of a dataset.

``$synthUNet_preprocessed/DatasetXXX_Name/splits_final.json`` is a list with one entry per fold,
``[{"train": [case ids], "val": [case ids]}, ...]`` (the nnU-Net format). It is written once, the first
time any trainer needs it, and then reused, so every recipe is compared on identical folds. A file the
user put there is respected after validation.

The split is a seeded K-fold: sort the case ids, permute them with ``numpy.random.RandomState(12345)``
and cut the permutation into ``n_folds`` contiguous chunks whose sizes differ by at most one (the first
``n % n_folds`` chunks get one more case). Chunk ``k`` is fold ``k``'s validation set, the rest its
training set. (Same idea as scikit-learn's ``KFold(shuffle=True, random_state=12345)`` that nnU-Net
uses, written out so that scikit-learn is not a dependency; the folds are not identical to sklearn's.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from synthunet.utilities.atomic_io import write_json_atomic
from synthunet.errors import SynthUNetError

SPLITS_FILE = "splits_final.json"
DEFAULT_SEED = 12345
DEFAULT_FOLDS = 5


class SplitsError(SynthUNetError, ValueError):
    """splits_final.json is malformed or does not match the preprocessed cases."""


def make_splits(case_ids: Sequence[str], n_folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED) -> list[dict]:
    """Seeded K-fold split of ``case_ids`` (order-independent: the ids are sorted first)."""
    cases = sorted(set(case_ids))
    if len(cases) < n_folds:
        raise SplitsError(f"{n_folds}-fold cross-validation needs at least {n_folds} cases, got {len(cases)}. "
                          "Add cases, or train with fold 'all'.")
    order = np.random.RandomState(seed).permutation(len(cases))
    shuffled = [cases[i] for i in order]
    sizes = [len(cases) // n_folds + (1 if k < len(cases) % n_folds else 0) for k in range(n_folds)]
    splits, start = [], 0
    for size in sizes:
        val = sorted(shuffled[start:start + size])
        val_set = set(val)
        splits.append({"train": [c for c in cases if c not in val_set], "val": val})
        start += size
    return splits


def validate_splits(splits: object, case_ids: Sequence[str], path: Path | str = SPLITS_FILE) -> list[dict]:
    """Check a loaded splits list against the available cases; return it cleaned, or raise :class:`SplitsError`."""
    available = set(case_ids)
    if not isinstance(splits, list) or not splits:
        raise SplitsError(f"{path}: must be a non-empty list of {{\"train\": [...], \"val\": [...]}} objects")
    problems: list[str] = []
    clean: list[dict] = []
    for fold, entry in enumerate(splits):
        if not isinstance(entry, dict) or not isinstance(entry.get("train"), list) or not isinstance(entry.get("val"), list):
            problems.append(f"fold {fold}: needs lists 'train' and 'val'")
            continue
        train, val = [str(c) for c in entry["train"]], [str(c) for c in entry["val"]]
        if not train or not val:
            problems.append(f"fold {fold}: 'train' and 'val' must both be non-empty")
        missing = sorted((set(train) | set(val)) - available)
        if missing:
            problems.append(f"fold {fold}: {len(missing)} case(s) not in the preprocessed data: {', '.join(missing[:5])}"
                            + (" ..." if len(missing) > 5 else ""))
        overlap = sorted(set(train) & set(val))
        if overlap:
            problems.append(f"fold {fold}: case(s) both in train and val: {', '.join(overlap[:5])}")
        clean.append({"train": train, "val": val})
    if problems:
        raise SplitsError(f"{path} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return clean


def load_or_create_splits(preprocessed_dataset_folder: Path | str, case_ids: Sequence[str],
                          n_folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED) -> list[dict]:
    """Read ``splits_final.json`` (validated) or create it from ``case_ids`` and write it atomically."""
    path = Path(preprocessed_dataset_folder) / SPLITS_FILE
    if path.is_file():
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise SplitsError(f"{path} is not valid JSON: {error}") from error
        return validate_splits(content, case_ids, path)
    splits = make_splits(case_ids, n_folds, seed)
    write_json_atomic(path, splits)
    return splits


def fold_cases(splits: list[dict], fold: int | str, case_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training cases, validation cases) of ``fold``; fold ``"all"`` trains and validates on every case."""
    if fold == "all":
        cases = sorted(case_ids)
        return cases, cases
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise SplitsError(f"Fold {fold!r} does not exist: the splits file has folds 0..{len(splits) - 1} (or use 'all')")
    return list(splits[fold]["train"]), list(splits[fold]["val"])


