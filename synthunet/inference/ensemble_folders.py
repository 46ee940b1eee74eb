"""``synth_ensemble``: the voxel-wise mean of prediction folders (e.g. of two configurations).

Every folder must hold the same image files (same relative paths, any supported ending, case sub-folders
included) on the same grid; the mean is computed in float64 and written as float32 with the geometry of
the first folder, each file under a temporary name and then renamed. ``*_uncertainty`` maps are not
averaged (a mean of standard deviations is not the ensemble's standard deviation) and are left out.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.dataset.dataset_json import SUPPORTED_FILE_ENDINGS
from synthunet.dataset.image_io import Geometry, read_geometry, read_image, remove_stale_temporaries, write_image
from synthunet.errors import SynthUNetError

#: geometries whose spacing, origin or direction differ by more than this (relative) are refused
GEOMETRY_TOLERANCE = 1e-3
_SHOWN = 10


class EnsembleError(SynthUNetError, ValueError):
    """Prediction folders that cannot be averaged: different files, different grids, too few folders."""


def _ending(name: str) -> str | None:
    return next((e for e in SUPPORTED_FILE_ENDINGS if name.endswith(e)), None)


def _is_uncertainty(name: str) -> bool:
    ending = _ending(name)
    return ending is not None and name[: -len(ending)].endswith("_uncertainty")


def prediction_files(folder: Path | str) -> dict[str, Path]:
    """Relative path (``/``-separated) -> file for every prediction image under ``folder``.

    Image files with a supported ending, in the folder or its sub-folders (BraTS case folders); hidden
    files and folders and ``*_uncertainty`` maps are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EnsembleError(f"Prediction folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if _ending(path.name) is not None and not _is_uncertainty(path.name):
            files[relative.as_posix()] = path
    return files


def _listing(names: Sequence[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def matched_files(folders: Sequence[Path | str]) -> dict[str, list[Path]]:
    """Relative name -> one file per folder; every folder must hold exactly the same names."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise EnsembleError(f"An ensemble needs at least two prediction folders, got {len(folders)}")
    if len({f.resolve() for f in folders}) != len(folders):
        raise EnsembleError("A prediction folder is given twice: " + ", ".join(str(f) for f in folders))
    listings = [prediction_files(folder) for folder in folders]
    for folder, listing in zip(folders, listings):
        if not listing:
            raise EnsembleError(f"Prediction folder {folder} holds no image files")
    names = set(listings[0])
    problems = []
    for folder, listing in zip(folders[1:], listings[1:]):
        only_first, only_here = names - set(listing), set(listing) - names
        if only_first:
            problems.append(f"{folder} lacks {_listing(only_first)} (present in {folders[0]})")
        if only_here:
            problems.append(f"{folder} has {_listing(only_here)}, which {folders[0]} lacks")
    if problems:
        raise EnsembleError("The prediction folders hold different cases: " + "; ".join(problems))
    return {name: [listing[name] for listing in listings] for name in sorted(names)}


def check_geometries(paths: Sequence[Path]) -> Geometry:
    """The common geometry of ``paths`` (headers only); raise naming the file whose grid differs."""
    first = read_geometry(paths[0])[0]
    for path in paths[1:]:
        differences = first.differences(read_geometry(path)[0], GEOMETRY_TOLERANCE)
        if differences:
            raise EnsembleError(f"{path} is not on the grid of {paths[0]} ({'; '.join(differences)}); predictions "
                                "can only be averaged voxel by voxel on one grid")
    return first


def average_images(paths: Sequence[Path | str]) -> tuple[np.ndarray, Geometry]:
    """Voxel-wise mean (float64) of images on one grid, and the first image's geometry."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise EnsembleError("Nothing to average")
    check_geometries(paths)
    total, geometry = None, None
    for path in paths:
        array, this_geometry = read_image(path, dtype=np.float64)
        if total is None:
            total, geometry = array.copy(), this_geometry
        else:
            total += array
    return total / len(paths), geometry


def ensemble_folders(folders: Sequence[Path | str], output_folder: Path | str, continue_prediction: bool = False,
                     files: dict[str, list[Path]] | None = None) -> list[Path]:
    """Average the predictions of ``folders`` file by file into ``output_folder``; return the files written.

    Everything is checked (same file names in every folder, every file's grid) before the first file is
    written. With ``continue_prediction`` existing outputs are kept (they are written atomically, so an
    existing file is complete). ``files``: the matched files, when the caller has them already.
    """
    output_folder = Path(output_folder)
    folders = [Path(f) for f in folders]
    if output_folder.resolve() in {f.resolve() for f in folders}:
        raise EnsembleError(f"The output folder {output_folder} must differ from the prediction folders")
    files = matched_files(folders) if files is None else files
    for paths in files.values():
        check_geometries(paths)
    remove_stale_temporaries(output_folder / name for name in files)  # left by a killed earlier run
    written = []
    for name, paths in files.items():
        destination = output_folder / name
        if continue_prediction and destination.is_file():
            continue
        mean, geometry = average_images(paths)
        write_image(mean.astype(np.float32), geometry, destination)
        written.append(destination)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_ensemble",
        description="Average prediction folders voxel by voxel (e.g. the outputs of synth_predict with two "
                    "configurations). Every folder must hold the same files on the same grids; the mean is "
                    "written as float32 with the first folder's geometry. *_uncertainty maps are left out.")
    parser.add_argument("-i", "--input", nargs="+", required=True, type=Path,
                        help="two or more prediction folders (same file names in each; case sub-folders allowed)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("--continue_prediction", action="store_true", help="keep outputs that already exist")
    refuse_nnunet_flags(parser, {"-np": "synth_ensemble averages the folders in this one process",
                                 "--save_npz": "synthesised images have no class probabilities to save"})
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written = ensemble_folders(args.input, args.output, args.continue_prediction)
    print(f"Wrote {len(written)} averaged prediction(s) to {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_ensemble``."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    raise SystemExit(main())
