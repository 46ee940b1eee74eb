"""Dataset id <-> name resolution (``-d 501`` finds ``Dataset501_*``), as in nnU-Net, and the default plans name."""
from __future__ import annotations

import re
from pathlib import Path

from synthunet import paths
from synthunet.errors import InputError, SynthUNetError
from synthunet.plans import DEFAULT_PLANS  # noqa: F401 (the plans every command uses unless told otherwise: -p)

DATASET_NAME_PATTERN = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_\-]*)$")


class DatasetNotFoundError(SynthUNetError, FileNotFoundError):
    """No (or more than one) dataset folder matches the requested id."""

    hint = "check the dataset id and $synthUNet_raw / $synthUNet_preprocessed / $synthUNet_results"


def dataset_name(dataset_id: int, name: str) -> str:
    """Folder name for a dataset id and a short name, e.g. ``Dataset501_BraTSPhantom``."""
    if not 0 < int(dataset_id) < 1000:
        raise InputError(f"Dataset id must be between 1 and 999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise InputError(f"Dataset name {name!r} may hold only letters, digits, '_' and '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def _candidates(folder: Path, dataset_id: int) -> list[str]:
    if not folder.is_dir():
        return []
    prefix = f"Dataset{int(dataset_id):03d}_"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith(prefix)
                  and DATASET_NAME_PATTERN.match(p.name))


def resolve_dataset_name(dataset: str | int) -> str:
    """Turn ``501``, ``"501"`` or ``"Dataset501_Name"`` into the dataset's folder name.

    Ids are looked up in the raw, preprocessed and results folders (whichever are set).
    """
    text = str(dataset)
    if DATASET_NAME_PATTERN.match(text):
        return text
    if not text.isdigit():
        raise DatasetNotFoundError(f"{text!r} is neither a dataset id (e.g. 501) nor a name (e.g. Dataset501_Name)")
    dataset_id = int(text)
    found: set[str] = set()
    for getter in (paths.raw_folder, paths.preprocessed_folder, paths.results_folder):
        try:
            found.update(_candidates(getter(), dataset_id))
        except paths.PathNotConfiguredError:
            continue
    if not found:
        raise DatasetNotFoundError(
            f"No folder Dataset{dataset_id:03d}_* in $synthUNet_raw, $synthUNet_preprocessed or $synthUNet_results. "
            f"Create one (e.g. synth_make_example_dataset -d {dataset_id}) or check the environment variables.")
    if len(found) > 1:
        raise DatasetNotFoundError(f"Dataset id {dataset_id} is ambiguous: {sorted(found)}. Pass the full name.")
    return found.pop()


def raw_dataset_folder(dataset: str | int) -> Path:
    """``$synthUNet_raw/DatasetXXX_Name`` for a dataset id or name."""
    return paths.raw_folder() / resolve_dataset_name(dataset)


def preprocessed_dataset_folder(dataset: str | int) -> Path:
    """``$synthUNet_preprocessed/DatasetXXX_Name`` for a dataset id or name."""
    return paths.preprocessed_folder() / resolve_dataset_name(dataset)


def results_dataset_folder(dataset: str | int) -> Path:
    """``$synthUNet_results/DatasetXXX_Name`` for a dataset id or name."""
    return paths.results_folder() / resolve_dataset_name(dataset)
