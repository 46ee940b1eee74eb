"""``synth_make_example_dataset``: write the embedded brain-tumour phantom as a raw synthUNet dataset.

Besides imagesTr, labelsTr and masksTr it writes ``oracleTr/{case}_{XXXX}.nii.gz``: each sequence's
noise-free, bias-free signal at the image's gain. It is never used for training (planning, preprocessing
and the validator read only imagesTr, labelsTr and masksTr); it measures the physical limit of a prediction.

The dataset is built in a hidden sibling folder and renamed into place at the end, so an interrupted
run never leaves a half-written ``DatasetXXX_BraTSPhantom``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

from synthunet import paths
from synthunet.dataset.dataset_json import image_file_name
from synthunet.dataset.example.mri_physics import PROTOCOL_FAMILIES
from synthunet.dataset.example.phantom import CHANNELS, LABELS, generate_case
from synthunet.dataset.identifiers import DATASET_NAME_PATTERN, dataset_name
from synthunet.dataset.image_io import write_image
from synthunet.errors import InputError
from synthunet.utilities.parallel import run_parallel

DATASET_SHORT_NAME = "BraTSPhantom"
FILE_ENDING = ".nii.gz"
# Noise-free, bias-free signals (same names, geometry and gain as imagesTr); not a training input.
ORACLE_FOLDER = "oracleTr"
DESCRIPTION = ("Physics-based multi-contrast brain-tumour phantom on MNI ICBM152 2009 anatomy (simulated, not "
               "patient data): T1N, T1C, T2W and T2F from 3 T sequence equations with partial volume, bias "
               "field, Rician noise and arbitrary scanner gain; BraTS labels 1 NCR, 2 ED, 3 ET; skull-stripped. "
               "Figures on it are not comparable with BraTS figures. See documentation/example_dataset.md.")
REFERENCE = ("synthUNet example dataset (synthunet.dataset.example). Anatomy: MNI ICBM152 2009 templates, "
             "Fonov et al. NeuroImage 2009/2011, Collins et al. IPMI 1999.")
LICENCE = ("Generated data: Apache-2.0 like synthUNet. Derived from the MNI ICBM152 2009 templates, Copyright (C) "
           "1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill "
           "University; see synthunet/dataset/example/data/NOTICE_ICBM152.txt.")


def dataset_json_content(num_cases: int, seed: int, spacing: float, anisotropic_fraction: float,
                         oracle: bool = True, protocol: str = "default") -> dict:
    """The dataset.json of a phantom dataset (``generator.protocol`` only for a non-default protocol family)."""
    from synthunet import __version__  # noqa: PLC0415

    return {"channel_names": {str(i): name for i, name in enumerate(CHANNELS)}, "labels": dict(LABELS),
            "numTraining": num_cases, "file_ending": FILE_ENDING, "name": DATASET_SHORT_NAME,
            "description": DESCRIPTION, "reference": REFERENCE, "licence": LICENCE,
            "generator": {"command": "synth_make_example_dataset", "synthunet_version": __version__,
                          "seed": seed, "spacing_mm": spacing, "anisotropic_fraction": anisotropic_fraction,
                          "oracle_folder": ORACLE_FOLDER if oracle else None,
                          **({"protocol": protocol} if protocol != "default" else {})}}


def write_case(index: int, seed: int, spacing: float, anisotropic_fraction: float, folder: Path,
               preview: Path | None = None, oracle: bool = True, protocol: str = "default") -> dict:
    """Simulate case ``index`` and write its images, label, mask and (``oracle``) oracle signals into the raw
    dataset ``folder``."""
    case = generate_case(index, seed=seed, spacing=spacing, anisotropic_fraction=anisotropic_fraction,
                         oracle=oracle, protocol=protocol)
    for channel_index, channel in enumerate(CHANNELS):
        name = image_file_name(case.case_id, channel_index, FILE_ENDING)
        write_image(case.images[channel], case.geometry, folder / "imagesTr" / name)
        if oracle:
            write_image(case.oracle[channel], case.geometry, folder / ORACLE_FOLDER / name)
    write_image(case.labels, case.geometry, folder / "labelsTr" / f"{case.case_id}{FILE_ENDING}")
    write_image(case.mask, case.geometry, folder / "masksTr" / f"{case.case_id}{FILE_ENDING}")
    if preview is not None:
        from synthunet.dataset.example.preview import save_preview  # noqa: PLC0415

        save_preview(case, preview)
    return {"case_id": case.case_id, "shape": list(case.geometry.shape), "spacing": list(case.geometry.spacing),
            "labels": sorted(int(v) for v in np.unique(case.labels)), "kind": case.parameters["tumour"]["kind"]}


def _write_case_star(arguments: tuple) -> dict:
    return write_case(*arguments)


def make_example_dataset(dataset_id: int = 501, num_cases: int = 40, seed: int = 0, spacing: float = 2.0,
                         num_processes: int = 1, overwrite: bool = False, anisotropic_fraction: float = 0.25,
                         preview: Path | None = None, preview_case: int = 0, progress: bool = True,
                         oracle: bool = True, protocol: str = "default") -> Path:
    """Write ``$synthUNet_raw/Dataset{ID}_BraTSPhantom``; return its folder.

    ``oracle``: also write ``oracleTr/`` (noise-free, bias-free signals; the other files are the same either way).
    ``protocol``: a protocol family (:data:`PROTOCOL_FAMILIES`); the same cases' anatomy under another protocol.

    Refuses to replace an existing dataset unless ``overwrite``; refuses when another dataset already
    uses the id (``-d`` would become ambiguous).
    """
    if num_cases < 1:
        raise InputError(f"--num_cases must be at least 1, got {num_cases}")
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    if not 0 < spacing <= 8:
        raise InputError(f"--spacing must be in (0, 8] mm, got {spacing}")
    if not 0 <= anisotropic_fraction <= 1:
        raise InputError(f"--anisotropic_fraction must be in [0, 1], got {anisotropic_fraction}")
    if protocol not in PROTOCOL_FAMILIES:
        raise InputError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOL_FAMILIES)}")
    if preview is not None and not 0 <= preview_case < num_cases:
        raise InputError(f"--preview_case must be a case index below --num_cases ({num_cases}), got {preview_case}")
    name = dataset_name(dataset_id, DATASET_SHORT_NAME)
    raw = paths.raw_folder()
    target = raw / name
    others = sorted(p.name for p in raw.glob(f"Dataset{int(dataset_id):03d}_*")
                    if p.is_dir() and p.name != name and DATASET_NAME_PATTERN.match(p.name)) if raw.is_dir() else []
    if others:
        raise FileExistsError(f"Dataset id {dataset_id} is already used by {', '.join(others)} in {raw}; "
                              f"choose another id with -d")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    raw.mkdir(parents=True, exist_ok=True)
    for stale in raw.glob(f".*_{name}_*"):  # staging and set-aside folders of a killed earlier run
        if stale.is_dir() and re.fullmatch(rf"\.(tmp|old)_{re.escape(name)}_[0-9a-f]{{8}}", stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    staging = raw / f".tmp_{name}_{uuid.uuid4().hex[:8]}"
    preview = Path(preview).resolve() if preview is not None else None
    jobs = [(i, seed, spacing, anisotropic_fraction, staging, preview if i == preview_case else None, oracle,
             protocol) for i in range(num_cases)]
    try:
        for sub in ("imagesTr", "labelsTr", "masksTr", *((ORACLE_FOLDER,) if oracle else ())):
            (staging / sub).mkdir(parents=True)
        summaries = sorted(run_parallel(_write_case_star, jobs, num_processes, progress, "phantom cases"),
                           key=lambda summary: summary["case_id"])
        (staging / "dataset.json").write_text(
            json.dumps(dataset_json_content(num_cases, seed, spacing, anisotropic_fraction, oracle, protocol),
                       indent=2) + "\n")
        _replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    shapes = np.array([s["shape"] for s in summaries])
    anisotropic = sum(1 for s in summaries if len(set(s["spacing"])) > 1)
    print(f"Wrote {num_cases} cases to {target} (median shape {tuple(int(v) for v in np.median(shapes, 0))}, "
          f"{anisotropic} anisotropic)")
    return target


def _replace_folder(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and deleted after."""
    old = None
    if target.exists():
        old = target.with_name(f".old_{target.name}_{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of synth_make_example_dataset."""
    parser = argparse.ArgumentParser(
        prog="synth_make_example_dataset",
        description="Generate the embedded example dataset: a physics-based multi-contrast brain-tumour phantom "
                    "(T1N, T1C, T2W, T2F with BraTS labels and brain masks) on MNI ICBM152 2009 anatomy shipped "
                    "with synthUNet, plus each sequence's noise-free, bias-free signal in oracleTr/ (never used for "
                    "training; it measures the physical limit). No network access is needed. "
                    "Output: $synthUNet_raw/DatasetXXX_BraTSPhantom. "
                    "Simulated data, not patient data; see documentation/example_dataset.md.")
    parser.add_argument("-d", "--dataset_id", type=int, default=501,
                        help="dataset id; the folder is Dataset{ID:03d}_BraTSPhantom (default 501)")
    parser.add_argument("--num_cases", type=int, default=40, help="number of training cases (default 40)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; case i is seeded from (seed, i), so the result does not depend on -np "
                             "(default 0)")
    parser.add_argument("--spacing", type=float, default=2.0,
                        help="voxel size in mm (in-plane for anisotropic cases); 2 keeps CPU training practical, "
                             "1 is BraTS-like (8x the voxels) (default 2)")
    parser.add_argument("--anisotropic_fraction", type=float, default=0.25,
                        help="share of cases acquired with 2x or 3x thicker slices along one axis (default 0.25)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOL_FAMILIES), default="default",
                        help="scanner protocol family: field strength, T1 sequence, parameter ranges, bias, noise and "
                             "slice thickness (documentation/example_dataset.md#protocol-families); the cases' "
                             "anatomy and tumours do not depend on it (default: default, the dataset as it always was)")
    parser.add_argument("-np", "--num_processes", type=int, default=min(4, os.cpu_count() or 1),
                        help="worker processes (default: min(4, CPU count))")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing Dataset{ID}_BraTSPhantom (it is swapped out only at the end)")
    parser.add_argument("--preview", type=Path, default=None, metavar="PATH",
                        help="also save a PNG with the four sequences and the labels of one case to PATH")
    parser.add_argument("--preview_case", type=int, default=0, help="case index shown by --preview (default 0)")
    parser.add_argument("--no_oracle", action="store_true",
                        help="do not write oracleTr/ (each sequence's noise-free, bias-free signal at the image's "
                             "gain, never used for training; about half the dataset's size). The other files are "
                             "the same either way")
    parser.add_argument("--no_progress", action="store_true", help="do not show a progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``synth_make_example_dataset``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from synthunet.cli_support import run_cli  # noqa: PLC0415

    return run_cli(lambda: make_example_dataset(
        dataset_id=args.dataset_id, num_cases=args.num_cases, seed=args.seed, spacing=args.spacing,
        num_processes=args.num_processes, overwrite=args.overwrite, anisotropic_fraction=args.anisotropic_fraction,
        preview=args.preview, preview_case=args.preview_case, progress=not args.no_progress,
        oracle=not args.no_oracle, protocol=args.protocol) and 0)


if __name__ == "__main__":
    sys.exit(main())
