"""Convert a BraTS 2023 / BraSyn training folder into the synthUNet raw format.

``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` becomes
``imagesTr/BraTS-GLI-00000-000_{0000..0003}.nii.gz`` (T1N, T1C, T2W, T2F) and ``labelsTr/BraTS-GLI-00000-000.nii.gz``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from synthunet import paths
from synthunet.dataset.brats_layout import BRATS_CHANNEL_NAMES, BRATS_LABELS, BRATS_SEQUENCES, find_brats_cases
from synthunet.dataset.dataset_json import image_file_name
from synthunet.dataset.identifiers import dataset_name
from synthunet.errors import InputError


@dataclass
class ConversionReport:
    """What the converter did: converted cases and skipped ones with the reason."""

    output_folder: Path
    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _place(source: Path, destination: Path, mode: str) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        destination.symlink_to(source.resolve())
    elif mode == "hardlink":
        os.link(source, destination)
    else:
        shutil.copy2(source, destination)


def convert_brats(input_folder: Path | str, dataset_id: int, name: str, output_root: Path | None = None,
                  mode: str = "copy", use_labels: bool = True, overwrite: bool = False,
                  progress: bool = True) -> ConversionReport:
    """Convert a folder of BraTS case sub-folders into ``{output_root}/Dataset{id}_{name}``.

    Cases missing one of the four sequences (or the seg file when the others have one) are skipped and
    reported. ``mode`` is ``copy``, ``symlink`` or ``hardlink``. The dataset appears atomically: it is
    assembled in a hidden sibling folder and renamed at the end.
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
    cases = find_brats_cases(input_folder)
    if not cases:
        raise FileNotFoundError(f"{input_folder} holds no BraTS case folders (expected e.g. "
                                "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz)")
    with_seg = [case for case, files in cases.items() if "seg" in files]
    labelled = use_labels and len(with_seg) > 0
    report = ConversionReport(output_folder=target)
    staging = output_root / f".tmp_{target.name}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "imagesTr").mkdir(parents=True)
    if labelled:
        (staging / "labelsTr").mkdir()
    for case_id, files in tqdm(sorted(cases.items()), desc="converting", disable=not progress):
        missing = [suffix for suffix in BRATS_SEQUENCES if suffix not in files]
        if missing:
            report.skipped[case_id] = f"missing sequence(s): {', '.join(missing)}"
            continue
        if labelled and "seg" not in files:
            report.skipped[case_id] = "missing seg (other cases have one)"
            continue
        for index, suffix in enumerate(BRATS_SEQUENCES):
            _place(files[suffix], staging / "imagesTr" / image_file_name(case_id, index, ".nii.gz"), mode)
        if labelled:
            _place(files["seg"], staging / "labelsTr" / f"{case_id}.nii.gz", mode)
        report.converted.append(case_id)
    if not report.converted:
        shutil.rmtree(staging)
        raise InputError(f"No complete case in {input_folder}: " + "; ".join(f"{c}: {r}" for c, r in report.skipped.items()))
    description = {"channel_names": BRATS_CHANNEL_NAMES, "numTraining": len(report.converted), "file_ending": ".nii.gz",
                   "name": name, "description": f"Converted from the BraTS layout in {input_folder.name} by synth_convert_brats",
                   "converted_with": mode, "skipped_cases": report.skipped}
    if labelled:
        description["labels"] = BRATS_LABELS
    (staging / "dataset.json").write_text(json.dumps(description, indent=2))
    for old in existing:
        shutil.rmtree(old)
    os.replace(staging, target)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="synth_convert_brats",
        description="Convert a BraTS 2023 / BraSyn training folder (case sub-folders with -t1n, -t1c, -t2w, -t2f and "
                    "-seg files; GLI, MEN, MET, SSA and PED prefixes) into $synthUNet_raw/DatasetXXX_NAME. Channels "
                    "become 0000 T1N, 0001 T1C, 0002 T2W, 0003 T2F; segmentations become labelsTr. Cases missing a "
                    "sequence are reported and skipped.")
    parser.add_argument("-i", "--input", required=True, help="folder holding the BraTS case sub-folders")
    parser.add_argument("-d", "--dataset_id", type=int, required=True, help="dataset id to create, e.g. 501")
    parser.add_argument("-n", "--name", default="BraSyn", help="dataset name (default BraSyn)")
    parser.add_argument("--mode", choices=["copy", "symlink", "hardlink"], default="copy",
                        help="copy the files (default) or link them (saves disk; the BraTS folder must stay)")
    parser.add_argument("--no_labels", action="store_true", help="ignore -seg files (no labelsTr)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    args = parser.parse_args(argv)
    from synthunet.cli_support import run_cli

    def action() -> int:
        report = convert_brats(args.input, args.dataset_id, args.name, mode=args.mode, use_labels=not args.no_labels,
                               overwrite=args.overwrite)
        print(f"wrote {report.output_folder} with {len(report.converted)} case(s)")
        for case_id, reason in report.skipped.items():
            print(f"  skipped {case_id}: {reason}")
        return 0

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
