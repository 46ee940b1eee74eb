"""Dataset validator: every problem of a raw dataset, reported at once, before anything is written.

``synth_validate_dataset -d 501`` (also run at the start of planning) checks:
dataset.json schema, file names, every case has every channel, all channels of a case share shape,
spacing, origin and direction, every file is readable and whole (not truncated or corrupt, see
:func:`synthunet.dataset.image_io.read_image`), no NaN/Inf, 3D only, labels are integers within the
declared set, and label/mask files share the geometry of their case. Each file is read once.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synthunet.dataset.dataset_json import (DatasetDescription, DatasetJsonError, list_case_files,
                                            load_dataset_json)
from synthunet.dataset.image_io import Geometry, ImageReadError, read_image
from synthunet.errors import SynthUNetError

GEOMETRY_TOLERANCE = 1e-3


class DatasetValidationError(SynthUNetError, ValueError):
    """A raw dataset breaks the format; the message lists every problem."""

    hint = "fix the files listed above; synth_validate_dataset -d ID checks again (documentation/dataset_format.md)"


def _check_image(path: Path, reference: Geometry | None, role: str
                 ) -> tuple[Geometry | None, np.ndarray | None, list[str]]:
    """Read one file (once) and check it: readable, whole, finite (:func:`read_image` checks these), 3D, and
    on the geometry of ``reference``. Return its geometry and stored values (None when unusable)."""
    try:
        array, geometry = read_image(path, dtype=None)
    except ImageReadError as error:
        return None, None, [f"{path.name}: {error.reason}"]
    if len(geometry.shape) != 3:
        return None, None, [f"{path.name}: is {len(geometry.shape)}D; synthUNet needs 3D images"]
    problems: list[str] = []
    if reference is not None:
        differences = geometry.matches(reference, GEOMETRY_TOLERANCE)
        if differences:
            problems.append(f"{path.name}: {role} geometry differs from the case's first channel: " + "; ".join(differences))
    return geometry, array, problems


def _check_label_values(path: Path, array: np.ndarray, allowed: set[int]) -> list[str]:
    if np.issubdtype(array.dtype, np.floating) and not np.all(array == np.round(array)):
        return [f"{path.name}: labels are not integers"]
    values = set(np.unique(array).astype(int).tolist())
    if allowed and not values <= allowed:
        return [f"{path.name}: label values {sorted(values - allowed)} are not declared in dataset.json labels {sorted(allowed)}"]
    return []


def _check_mask_values(path: Path, array: np.ndarray) -> list[str]:
    values = set(np.unique(array).tolist())
    if not values <= {0, 1}:
        return [f"{path.name}: brain mask must hold only 0 and 1, found {sorted(values)[:5]}"]
    return []


def _check_case(job: tuple[str, dict[int, Path], int, Path | None, Path | None, set[int]]) -> list[str]:
    case_id, files, num_channels, label_file, mask_file, label_values = job
    problems: list[str] = []
    missing = [c for c in range(num_channels) if c not in files]
    if missing:
        problems.append(f"case {case_id}: missing channel(s) {', '.join(f'{c:04d}' for c in missing)}")
    extra = sorted(c for c in files if c >= num_channels)
    if extra:
        problems.append(f"case {case_id}: channel index(es) {extra} not declared in channel_names")
    reference: Geometry | None = None
    for channel in sorted(c for c in files if c < num_channels):
        geometry, _, found = _check_image(files[channel], reference, "channel")
        problems += [f"case {case_id}: {p}" for p in found]
        reference = reference or geometry
    if label_file is not None:
        _, array, found = _check_image(label_file, reference, "label")
        problems += [f"case {case_id}: {p}" for p in found]
        if array is not None:
            problems += [f"case {case_id}: {p}" for p in _check_label_values(label_file, array, label_values)]
    if mask_file is not None:
        _, array, found = _check_image(mask_file, reference, "mask")
        problems += [f"case {case_id}: {p}" for p in found]
        if array is not None:
            problems += [f"case {case_id}: {p}" for p in _check_mask_values(mask_file, array)]
    return problems


def validate_dataset(folder: Path | str, num_processes: int = 1, progress: bool = True) -> list[str]:
    """Return every problem of the raw dataset in ``folder`` (empty list: the dataset is valid)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    try:
        description: DatasetDescription = load_dataset_json(folder / "dataset.json")
    except DatasetJsonError as error:
        return [str(error)]
    images, misfits = list_case_files(folder / "imagesTr", description.file_ending)
    problems = [f"imagesTr/{name}: name does not match {{case}}_{{XXXX}}{description.file_ending}" for name in misfits]
    if not images:
        problems.append(f"imagesTr/ holds no images ending in {description.file_ending}")
        return problems
    if len(images) != description.num_training:
        problems.append(f"dataset.json says numTraining={description.num_training} but imagesTr holds {len(images)} cases")
    jobs = []
    optional_folders = {"labelsTr": "label", "masksTr": "mask"}
    per_case_optional: dict[str, dict[str, Path]] = {}
    for sub_folder, role in optional_folders.items():
        path = folder / sub_folder
        if not path.is_dir():
            continue
        present = {p.name[: -len(description.file_ending)]: p for p in path.iterdir()
                   if p.name.endswith(description.file_ending) and not p.name.startswith(".")}
        for case_id in sorted(set(images) - set(present)):
            problems.append(f"case {case_id}: no {role} file {sub_folder}/{case_id}{description.file_ending}")
        for case_id in sorted(set(present) - set(images)):
            problems.append(f"{sub_folder}/{case_id}{description.file_ending}: {role} file without images in imagesTr")
        per_case_optional[role] = present
    if "label" in per_case_optional and not description.labels:
        problems.append("labelsTr/ exists but dataset.json declares no 'labels'")
    for case_id, files in sorted(images.items()):
        jobs.append((case_id, files, len(description.channel_names), per_case_optional.get("label", {}).get(case_id),
                     per_case_optional.get("mask", {}).get(case_id), description.label_values))
    if num_processes > 1:
        with ProcessPoolExecutor(num_processes) as pool:
            results = list(tqdm(pool.map(_check_case, jobs), total=len(jobs), desc="validating", disable=not progress))
    else:
        results = [_check_case(job) for job in tqdm(jobs, desc="validating", disable=not progress)]
    for found in results:
        problems += found
    return problems


def raise_if_invalid(folder: Path | str, num_processes: int = 1, progress: bool = True) -> None:
    """Validate and raise :class:`DatasetValidationError` listing every problem."""
    problems = validate_dataset(folder, num_processes, progress)
    if problems:
        raise DatasetValidationError(f"{folder} is not a valid synthUNet raw dataset ({len(problems)} problem(s)):\n  - "
                                     + "\n  - ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="synth_validate_dataset",
        description="Check a raw dataset ($synthUNet_raw/DatasetXXX_Name) and list every problem at once: "
                    "dataset.json schema, file names, missing channels, geometry mismatches between the channels, "
                    "labels and masks of a case, NaN/Inf values, non-3D images, undeclared label values.")
    parser.add_argument("-d", "--dataset", required=True,
                        help="dataset id (501) or name (Dataset501_Name); or a path to a dataset folder")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="parallel worker processes (default 2)")
    args = parser.parse_args(argv)
    from synthunet.dataset.identifiers import raw_dataset_folder
    from synthunet.cli_support import run_cli
    return run_cli(lambda: _validate_cli(args, raw_dataset_folder))


def _validate_cli(args: argparse.Namespace, raw_dataset_folder) -> int:
    folder = Path(args.dataset) if Path(args.dataset).is_dir() else raw_dataset_folder(args.dataset)
    problems = validate_dataset(folder, args.num_processes)
    if problems:
        print(f"{folder}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{folder}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
