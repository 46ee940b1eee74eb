"""Dataset validator: every problem of a raw dataset, reported at once, before anything is written.

``synth_validate_dataset -d 501`` (also run at the start of planning) checks:
dataset.json schema, file names, every case has every channel, all channels of a case share shape,
spacing, origin and direction, every file is readable and whole (not truncated or corrupt, see
:func:`synthunet.dataset.image_io.read_image`), no NaN/Inf, 3D only, labels are integers within the
declared set (plain labels, or every value of nnU-Net region lists, :mod:`synthunet.dataset.label_scheme`),
and label/mask files share the geometry of their case. It also flags NIfTI files whose
compression does not match their name, all-zero channels, an empty brain (the mask file, else the non-zero
voxels of the channels) and cases smaller than the evaluation's SSIM window along any axis. Each file is
read once; a file that cannot be read is one problem (naming case and file) and validation goes on.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthunet.dataset.dataset_json import (DatasetDescription, DatasetJsonError, list_case_files,
                                            load_dataset_json)
from synthunet.dataset.image_io import Geometry, ImageReadError, read_image
from synthunet.errors import SynthUNetError
from synthunet.utilities.parallel import run_parallel

GEOMETRY_TOLERANCE = 1e-3
#: the width of the evaluation's SSIM window (synthunet.evaluation.ssim.window_size(); a test keeps them equal):
#: every image axis needs at least this many voxels
MIN_EDGE = 11
_GZIP_MAGIC = b"\x1f\x8b"


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
    except OSError as error:  # e.g. no permission to read
        return None, None, [f"{path.name}: cannot be read ({error.strerror or error})"]
    if len(geometry.shape) != 3:
        return None, None, [f"{path.name}: is {len(geometry.shape)}D; synthUNet needs 3D images"]
    problems: list[str] = _check_compression(path)
    if reference is not None:
        differences = geometry.differences(reference, GEOMETRY_TOLERANCE)
        if differences:
            problems.append(f"{path.name}: {role} geometry differs from the case's first channel: " + "; ".join(differences))
    return geometry, array, problems


def _check_compression(path: Path) -> list[str]:
    """A NIfTI file whose compression does not match its name: synthUNet reads it (by content), other tools
    (nibabel, nnU-Net) go by the name and fail."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return []
    try:
        with open(path, "rb") as file:
            compressed = file.read(2) == _GZIP_MAGIC
    except OSError:
        return []
    if name.endswith(".gz") and not compressed:
        return [f"{path.name}: is not gzip-compressed although its name ends in .nii.gz (other tools than "
                "synthUNet cannot read it); save it again compressed"]
    if name.endswith(".nii") and compressed:
        return [f"{path.name}: is gzip-compressed although its name ends in .nii (other tools than synthUNet "
                "cannot read it); save it again uncompressed"]
    return []


def _check_size(shape: tuple[int, ...], min_edge: int) -> list[str]:
    """A case smaller than ``min_edge`` voxels (the evaluation's SSIM window) along any axis."""
    small = [f"{axis}={size}" for axis, size in zip("zyx", shape) if size < min_edge]
    if not small:
        return []
    return [f"shape {tuple(shape)} (z, y, x) is smaller than the {min_edge}-voxel SSIM window of the evaluation "
            f"({', '.join(small)}); every axis needs at least {min_edge} voxels"]


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


@dataclass(frozen=True)
class _CaseJob:
    """What :func:`_check_case` needs to check one case (picklable for the worker processes)."""

    case_id: str
    files: dict[int, Path]
    channel_names: tuple[str, ...]
    label_file: Path | None
    mask_file: Path | None
    label_values: frozenset[int]
    min_edge: int


def _check_case(job: _CaseJob) -> list[str]:
    """Every problem of one case, each starting with ``case {id}:``; never raises for a bad file."""
    problems: list[str] = []
    num_channels = len(job.channel_names)
    missing = [c for c in range(num_channels) if c not in job.files]
    if missing:
        problems.append(f"missing channel(s) {', '.join(f'{c:04d}' for c in missing)}")
    extra = sorted(c for c in job.files if c >= num_channels)
    if extra:
        problems.append(f"channel index(es) {extra} not declared in channel_names")
    reference: Geometry | None = None
    any_channel_read, any_nonzero = False, False
    for channel in sorted(c for c in job.files if c < num_channels):
        path = job.files[channel]
        geometry, array, found = _check_image(path, reference, "channel")
        problems += found
        if array is not None:
            any_channel_read = True
            nonzero = bool(np.any(array))
            any_nonzero |= nonzero
            if not nonzero:
                problems.append(f"{path.name}: channel {channel:04d} ({job.channel_names[channel]}) is all zero")
        reference = reference or geometry
    if reference is not None:
        problems += _check_size(reference.shape, job.min_edge)
    if job.label_file is not None:
        _, array, found = _check_image(job.label_file, reference, "label")
        problems += found
        if array is not None:
            problems += _check_label_values(job.label_file, array, set(job.label_values))
    if job.mask_file is not None:
        _, array, found = _check_image(job.mask_file, reference, "mask")
        problems += found
        if array is not None:
            problems += _check_mask_values(job.mask_file, array)
            if not np.any(array > 0):
                problems.append(f"{job.mask_file.name}: brain mask is empty (no voxel > 0)")
    elif any_channel_read and not any_nonzero:
        problems.append("the brain is empty: there is no brain mask and every channel is zero (without a mask the "
                        "brain is the non-zero voxels of the channels)")
    return [f"case {job.case_id}: {p}" for p in problems]


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
        jobs.append(_CaseJob(case_id, files, tuple(description.channels),
                             per_case_optional.get("label", {}).get(case_id),
                             per_case_optional.get("mask", {}).get(case_id), frozenset(description.label_values),
                             MIN_EDGE))
    for found in run_parallel(_check_case, jobs, num_processes, progress, "validating"):
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
                    "labels and masks of a case, unreadable, truncated or corrupt files, NaN/Inf values, non-3D "
                    "images, undeclared label values, NIfTI compression that does not match the name, all-zero "
                    "channels, empty brains and cases smaller than the evaluation's SSIM window.")
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
