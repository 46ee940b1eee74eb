"""The BraTS 2023 / BraSyn folder layout: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``."""
from __future__ import annotations

import re
from pathlib import Path

from synthunet.dataset.label_scheme import BRATS_2023_LABELS

# file suffix -> synthUNet channel name, in the channel order synthUNet uses for BraTS data
BRATS_SEQUENCES: dict[str, str] = {"t1n": "T1N", "t1c": "T1C", "t2w": "T2W", "t2f": "T2F"}
BRATS_CHANNEL_NAMES: dict[str, str] = {str(i): name for i, name in enumerate(BRATS_SEQUENCES.values())}
BRATS_LABELS: dict[str, int] = dict(BRATS_2023_LABELS)  # read back as BraTS 2023 by synthunet.dataset.label_scheme
BRATS_CASE_PATTERN = re.compile(r"^BraTS-(GLI|MEN|MET|SSA|PED|GoAT)-\d{5}-\d{3}$")
_FILE_PATTERN = re.compile(rf"^(?P<case>.+)-(?P<suffix>{'|'.join(BRATS_SEQUENCES)}|seg)\.nii(\.gz)?$")


def split_brats_file_name(file_name: str) -> tuple[str, str] | None:
    """``BraTS-GLI-00000-000-t1c.nii.gz`` -> (``BraTS-GLI-00000-000``, ``t1c``); None if it does not fit."""
    match = _FILE_PATTERN.match(file_name)
    if match is None:
        return None
    return match.group("case"), match.group("suffix")


def is_brats_case_folder(folder: Path) -> bool:
    """True when ``folder`` holds at least one ``{folder name}-{seq}.nii.gz`` file."""
    if not folder.is_dir():
        return False
    for path in folder.iterdir():
        parsed = split_brats_file_name(path.name)
        if parsed is not None and parsed[0] == folder.name:
            return True
    return False


def find_brats_case_files(folder: Path) -> dict[str, dict[str, list[Path]]]:
    """Map case id -> {suffix (t1n, t1c, t2w, t2f, seg): every file of it} for a folder of BraTS case
    sub-folders (two files for one suffix, ``-t1n.nii`` and ``-t1n.nii.gz``, are both listed)."""
    cases: dict[str, dict[str, list[Path]]] = {}
    for case_folder in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        files: dict[str, list[Path]] = {}
        for path in sorted(case_folder.iterdir()):
            parsed = split_brats_file_name(path.name)
            if parsed is not None and parsed[0] == case_folder.name:
                files.setdefault(parsed[1], []).append(path)
        if files:
            cases[case_folder.name] = files
    return cases


def find_brats_cases(folder: Path) -> dict[str, dict[str, Path]]:
    """Map case id -> {suffix (t1n, t1c, t2w, t2f, seg): file} for a folder of BraTS case sub-folders."""
    return {case: {suffix: paths[-1] for suffix, paths in files.items()}
            for case, files in find_brats_case_files(folder).items()}
