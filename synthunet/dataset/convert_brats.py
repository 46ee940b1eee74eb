"""Convert a BraTS 2023 / BraSyn training folder into the synthUNet raw format.

``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` becomes
``imagesTr/BraTS-GLI-00000-000_{0000..0003}.nii.gz`` (T1N, T1C, T2W, T2F) and ``labelsTr/BraTS-GLI-00000-000.nii.gz``.
dataset.json declares the BraTS 2023 labels ``{"background": 0, "NCR": 1, "ED": 2, "ET": 3}``, which
:mod:`synthunet.dataset.label_scheme` reads back as NCR / ED / ET with WT = {1, 2, 3}, TC = {1, 3}, ET = {3}
(a ``-seg`` file in another numbering, e.g. BraTS 2021's 4 for ET, fails the validation).

Only a dataset that validates is written: case names outside the raw format's (letters, digits, ``_ - .``)
and a sequence given twice (``-t1n.nii`` and ``-t1n.nii.gz``) are refused before anything is written; a file
that is not gzip-compressed (a ``.nii``, or an uncompressed file named ``.nii.gz``) is compressed on the way,
so every ``.nii.gz`` of the dataset is one; and the assembled dataset goes through the validator
(:mod:`synthunet.dataset.validate`) before it is renamed into place.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from synthunet import paths
from synthunet.dataset.brats_layout import BRATS_CHANNEL_NAMES, BRATS_LABELS, BRATS_SEQUENCES, find_brats_case_files
from synthunet.dataset.dataset_json import CASE_ID_PATTERN, image_file_name
from synthunet.dataset.identifiers import dataset_name
from synthunet.dataset.validate import DatasetValidationError, validate_dataset
from synthunet.errors import InputError


@dataclass
class ConversionReport:
    """What the converter did: converted cases and skipped ones with the reason."""

    output_folder: Path
    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(2) == b"\x1f\x8b"


def _place(source: Path, destination: Path, mode: str) -> None:
    """Copy or link ``source`` to ``destination`` (a .nii.gz name); a source that is not gzip-compressed is
    compressed instead, whatever the mode, so that the file is what its name says."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not _is_gzip(source):
        with open(source, "rb") as plain, gzip.open(destination, "wb", compresslevel=6) as compressed:
            shutil.copyfileobj(plain, compressed, 1 << 20)
    elif mode == "symlink":
        destination.symlink_to(source.resolve())
    elif mode == "hardlink":
        os.link(source, destination)
    else:
        shutil.copy2(source, destination)


def _check_names(cases: dict[str, dict[str, list[Path]]]) -> None:
    """Refuse, listing every one, case names the raw format does not allow and sequences given twice."""
    problems = [f"case folder {case!r}: the name may hold only letters, digits, '_', '-' and '.' (and must start "
                "with a letter or digit)" for case in cases if not CASE_ID_PATTERN.match(case)]
    for case, files in cases.items():
        for suffix, found in files.items():
            if len(found) > 1:
                problems.append(f"case {case}: {' and '.join(str(p) for p in found)} are both its {suffix}; "
                                "it is ambiguous which one to use")
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the BraTS folder; nothing was written:\n  - "
                         + "\n  - ".join(problems),
                         hint="rename the case folders (and their files), or remove one of each pair of files")


def convert_brats(input_folder: Path | str, dataset_id: int, name: str, output_root: Path | None = None,
                  mode: str = "copy", use_labels: bool = True, overwrite: bool = False,
                  progress: bool = True, num_processes: int = 2) -> ConversionReport:
    """Convert a folder of BraTS case sub-folders into ``{output_root}/Dataset{id}_{name}``.

    Cases missing one of the four sequences (or the seg file when the others have one) are skipped and
    reported. ``mode`` is ``copy``, ``symlink`` or ``hardlink``. The dataset appears atomically: it is
    assembled in a hidden sibling folder, validated (``num_processes`` reading processes), and renamed at
    the end; if anything fails, nothing is left behind.
    """
    input_folder = Path(input_folder)
    if not input_folder.is_dir():
        raise FileNotFoundError(f"BraTS folder {input_folder} does not exist")
    if mode not in ("copy", "symlink", "hardlink"):
        raise InputError(f"mode must be copy, symlink or hardlink, got {mode!r}")
    output_root = Path(output_root) if output_root is not None else paths.raw_folder()
    target = output_root / dataset_name(dataset_id, name)
    existing = sorted(output_root.glob(f"Dataset{int(dataset_id):03d}_*")) if output_root.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; pass --overwrite to replace it")
    all_files = find_brats_case_files(input_folder)
    if not all_files:
        raise FileNotFoundError(f"{input_folder} holds no BraTS case folders (expected e.g. "
                                "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz)")
    _check_names(all_files)
    cases = {case: {suffix: found[0] for suffix, found in files.items()} for case, files in all_files.items()}
    with_seg = [case for case, files in cases.items() if "seg" in files]
    labelled = use_labels and len(with_seg) > 0
    report = ConversionReport(output_folder=target)
    staging = output_root / f".tmp_{target.name}"
    if staging.exists():  # left by a killed earlier run
        shutil.rmtree(staging)
    try:
        sources = _assemble(staging, cases, labelled, mode, report, progress)
        if not report.converted:
            raise InputError(f"No complete case in {input_folder}: "
                             + "; ".join(f"{c}: {r}" for c, r in report.skipped.items()))
        description = {"channel_names": BRATS_CHANNEL_NAMES, "numTraining": len(report.converted),
                       "file_ending": ".nii.gz", "name": name,
                       "description": f"Converted from the BraTS layout in {input_folder.name} by synth_convert_brats",
                       "converted_with": mode, "skipped_cases": report.skipped}
        if labelled:
            description["labels"] = dict(BRATS_LABELS)
        (staging / "dataset.json").write_text(json.dumps(description, indent=2))
        problems = validate_dataset(staging, num_processes, progress)
        if problems:
            shown = [_with_source(problem, sources) for problem in problems[:50]]
            raise DatasetValidationError(
                f"The converted dataset {target.name} does not validate ({len(problems)} problem(s)); nothing was "
                "written:\n  - " + "\n  - ".join(shown + ([f"... and {len(problems) - 50} more"]
                                                        if len(problems) > 50 else [])),
                hint="repair or remove the BraTS files named above, then convert again")
        for old in existing:
            shutil.rmtree(old)
        os.replace(staging, target)
    finally:
        if staging.exists():  # failed or interrupted: leave nothing half-written
            shutil.rmtree(staging, ignore_errors=True)
    return report


def _assemble(staging: Path, cases: dict[str, dict[str, Path]], labelled: bool, mode: str,
              report: ConversionReport, progress: bool) -> dict[str, Path]:
    """Place every complete case in ``staging``; return converted file name -> its BraTS source."""
    (staging / "imagesTr").mkdir(parents=True)
    if labelled:
        (staging / "labelsTr").mkdir()
    sources: dict[str, Path] = {}
    for case_id, files in tqdm(sorted(cases.items()), desc="converting", disable=not progress):
        missing = [suffix for suffix in BRATS_SEQUENCES if suffix not in files]
        if missing:
            report.skipped[case_id] = f"missing sequence(s): {', '.join(missing)}"
            continue
        if labelled and "seg" not in files:
            report.skipped[case_id] = "missing seg (other cases have one)"
            continue
        destinations = {suffix: staging / "imagesTr" / image_file_name(case_id, index, ".nii.gz")
                        for index, suffix in enumerate(BRATS_SEQUENCES)}
        if labelled:
            destinations["seg"] = staging / "labelsTr" / f"{case_id}.nii.gz"
        for suffix, destination in destinations.items():
            _place(files[suffix], destination, mode)
            sources[destination.name] = files[suffix]
        report.converted.append(case_id)
    return sources


def _with_source(problem: str, sources: dict[str, Path]) -> str:
    """A validator problem (``case X: FILE: reason``), with the BraTS file behind the converted file it names."""
    match = re.match(r"case [^:]+: ([^:]+):", problem)
    source = sources.get(match.group(1)) if match else None
    return f"{problem} (from {source})" if source is not None else problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="synth_convert_brats",
        description="Convert a BraTS 2023 / BraSyn training folder (case sub-folders with -t1n, -t1c, -t2w, -t2f and "
                    "-seg files; GLI, MEN, MET, SSA and PED prefixes) into $synthUNet_raw/DatasetXXX_NAME. Channels "
                    "become 0000 T1N, 0001 T1C, 0002 T2W, 0003 T2F; segmentations become labelsTr. Cases missing a "
                    "sequence are reported and skipped. The result is validated (synth_validate_dataset) before it "
                    "is written; a dataset that does not validate is not written.")
    parser.add_argument("-i", "--input", required=True, help="folder holding the BraTS case sub-folders")
    parser.add_argument("-d", "--dataset_id", type=int, required=True, help="dataset id to create, e.g. 501")
    parser.add_argument("-n", "--name", default="BraSyn", help="dataset name (default BraSyn)")
    parser.add_argument("--mode", choices=["copy", "symlink", "hardlink"], default="copy",
                        help="copy the files (default) or link them (saves disk; the BraTS folder must stay)")
    parser.add_argument("--no_labels", action="store_true", help="ignore -seg files (no labelsTr)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    parser.add_argument("-np", "--num_processes", type=int, default=2,
                        help="processes that validate the converted files (default 2)")
    args = parser.parse_args(argv)
    from synthunet.cli_support import run_cli

    def action() -> int:
        report = convert_brats(args.input, args.dataset_id, args.name, mode=args.mode, use_labels=not args.no_labels,
                               overwrite=args.overwrite, num_processes=args.num_processes)
        print(f"wrote {report.output_folder} with {len(report.converted)} case(s)")
        for case_id, reason in report.skipped.items():
            print(f"  skipped {case_id}: {reason}")
        return 0

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
