"""Checks ``synth_predict`` and ``synth_segment`` run before writing the first output.

Every input file of every case to predict is read once with the checked reader (readable, whole, finite,
3D) and compared with the case's first file (shape, spacing, origin, direction); the output folder and
every output file name must be writable. All problems, with those of the layout (missing sequences, ...),
are raised as one error (:func:`raise_problems`), so a damaged case 400 stops the command before case 1 is
written. Reading every file up front costs one extra read per input (about 0.1-0.2 s per BraTS .nii.gz,
spread over the preprocessing processes).
"""
from __future__ import annotations

import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from synthunet.dataset.image_io import ImageReadError, read_image

#: a problem: (message naming the case / file / folder, hint or None)
Problem = tuple[str, "str | None"]

OUTPUT_HINT = "choose an output folder (-o) that can be created and written, or move the file or folder in the way"


def check_case_files(case_id: str, files: Mapping[str, Path]) -> list[Problem]:
    """Read every file of a case (the checks of :func:`read_image`), check it is 3D and on the grid of the
    case's first file; return the problems (worker function: it must pickle)."""
    problems: list[Problem] = []
    reference, first = None, ""
    for path in files.values():
        try:
            _, geometry = read_image(path, dtype=None)
        except ImageReadError as error:
            problems.append((f"Case {case_id}: {error}", error.hint))
            continue
        if len(geometry.shape) != 3:
            problems.append((f"Case {case_id}: {path} is {len(geometry.shape)}D; synthUNet needs 3D images", None))
        elif reference is None:
            reference, first = geometry, Path(path).name
        elif differences := reference.differences(geometry):
            problems.append((f"Case {case_id}: {Path(path).name} does not lie on the grid of {first} "
                             f"({'; '.join(differences)})", "resample the case's sequences onto one grid"))
    return problems


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created if needed), or None."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{folder} cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"{folder} is not writable" if existing == folder
                else f"{folder} cannot be created: {existing} is not writable")
    return None


def check_outputs(output_folder: Path, output_files: Iterable[Path]) -> list[Problem]:
    """The output folder and every output file's folder can be written; no output name is taken by a folder."""
    problems: list[Problem] = []
    output_folder = Path(output_folder)
    problem = _folder_problem(output_folder)
    if problem:
        return [(f"Output folder: {problem}", OUTPUT_HINT)]
    checked = {output_folder}
    for path in map(Path, output_files):
        if path.parent not in checked:
            checked.add(path.parent)
            problem = _folder_problem(path.parent)
            if problem:
                problems.append((f"Output: {problem}", OUTPUT_HINT))
                continue
        if path.is_dir():
            problems.append((f"Output file {path} is taken by a folder", OUTPUT_HINT))
    return problems


def check_before_writing(cases: Sequence[tuple[str, Mapping[str, Path]]], output_folder: Path,
                         output_files: Iterable[Path], executor: Executor | None = None) -> list[Problem]:
    """The problems of every case's files (read in ``executor``'s processes when given) and of the outputs."""
    problems = check_outputs(output_folder, output_files)
    if executor is None:
        found = [check_case_files(case_id, files) for case_id, files in cases]
    else:
        found = list(executor.map(check_case_files, [c for c, _ in cases], [f for _, f in cases]))
    for case_problems in found:
        problems += case_problems
    return problems


def raise_problems(problems: Sequence[Problem], error_class: type, what: str) -> None:
    """Raise ``error_class`` listing every problem (one problem: just its message); nothing if none.

    The hint is the problems' own when they share one, else a general one."""
    if not problems:
        return
    hints = list(dict.fromkeys(hint for _, hint in problems if hint))
    hint = hints[0] if len(hints) == 1 else "fix every problem listed above; nothing was written"
    if len(problems) == 1:
        raise error_class(problems[0][0], hint=hint)
    shown = [message for message, _ in problems[:20]] + ([f"... and {len(problems) - 20} more"]
                                                         if len(problems) > 20 else [])
    raise error_class(f"{len(problems)} problems {what}; nothing was written:\n  - " + "\n  - ".join(shown), hint=hint)
