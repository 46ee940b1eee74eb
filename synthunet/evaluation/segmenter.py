"""Downstream check: does a tumour segmenter work as well on synthetic inputs as on real ones?

The user gives a command template with ``{input}`` and ``{output}`` placeholders, e.g.
``"nnUNetv2_predict -i {input} -o {output} -d 137 -c 3d_fullres"``. The evaluator writes two input sets in
raw format (``{case}_{XXXX}.nii.gz``): the real images, and the same images with the target channel
replaced by the prediction (one set per target). It runs the command once per set (no shell; the template
is split with :func:`shlex.split`), reads the label maps ``{output}/{case}.nii.gz`` and scores them against
the reference labels with Dice per BraTS region (WT = labels > 0, TC = labels in {1, 3}, ET = label 3).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from synthunet.dataset.dataset_json import SUPPORTED_FILE_ENDINGS
from synthunet.dataset.image_io import read_image, write_image
from synthunet.evaluation.layout import CaseFiles, file_ending_of
from synthunet.evaluation.metrics import BRATS_REGIONS, EvaluationError, brats_region_dice

SEGMENTATION_COLUMNS = ("case", "target", "input_set", *BRATS_REGIONS)


def build_command(template: str, input_folder: Path, output_folder: Path) -> list[str]:
    """Split the template like a shell would (no shell is run) and fill ``{input}`` and ``{output}``."""
    if "{input}" not in template or "{output}" not in template:
        raise EvaluationError(f"The segmenter command must contain {{input}} and {{output}}, got {template!r}")
    try:
        tokens = shlex.split(template)
    except ValueError as error:
        raise EvaluationError(f"Cannot split the segmenter command {template!r}: {error}") from error
    return [token.replace("{input}", str(input_folder)).replace("{output}", str(output_folder)) for token in tokens]


def run_command(template: str, input_folder: Path, output_folder: Path, description: str) -> None:
    """Run the segmenter on one input folder; raise :class:`EvaluationError` with its stderr if it fails."""
    output_folder.mkdir(parents=True, exist_ok=True)
    arguments = build_command(template, input_folder, output_folder)
    try:
        completed = subprocess.run(arguments, capture_output=True, text=True, check=False)
    except OSError as error:
        raise EvaluationError(f"Could not start the segmenter ({arguments[0]!r}) on the {description}: {error}") \
            from error
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout or "")[-2000:]
        raise EvaluationError(f"The segmenter failed on the {description} (exit code {completed.returncode}): "
                              f"{shlex.join(arguments)}\n{tail}")


def _place(source: Path, destination_stem: Path, ending: str) -> None:
    """Copy an image to ``{destination_stem}{ending}``, converting the format when the endings differ."""
    destination = destination_stem.with_name(destination_stem.name + ending)
    if file_ending_of(source.name) == ending:
        shutil.copyfile(source, destination)
    else:
        array, geometry = read_image(source, dtype=None)
        write_image(array, geometry, destination)


def _write_input_set(folder: Path, cases: dict[str, CaseFiles], replacements: dict[str, Path], target: str | None):
    folder.mkdir(parents=True, exist_ok=True)
    for case, files in cases.items():
        for name, path in files.channels.items():
            source = replacements[case] if (target is not None and name == target) else path
            index = files.channel_indices.get(name)
            if index is None:
                raise EvaluationError(f"No channel index for channel {name} of case {case}")
            _place(source, folder / f"{case}_{index:04d}", files.file_ending)


def _read_segmentation(output_folder: Path, case: str, description: str) -> np.ndarray:
    for ending in SUPPORTED_FILE_ENDINGS:
        candidate = output_folder / f"{case}{ending}"
        if candidate.is_file():
            return read_image(candidate, dtype=None)[0]
    raise EvaluationError(f"The segmenter wrote no label map for case {case} on the {description} "
                          f"(expected {output_folder}/{case}.nii.gz)")


def run_segmenter_check(case_files: Sequence[CaseFiles], command: str, work_folder: Path | str | None = None,
                        progress: bool = True) -> list[dict]:
    """Run the segmenter on the real and on the synthetic input sets; return one row per case x target x set.

    Rows hold ``case``, ``target``, ``input_set`` (``"real"`` or ``"synthetic"``) and Dice ``WT``, ``TC``, ``ET``
    against the reference labels (the real-set row is repeated for every target of the case so each
    target's real and synthetic rows pair up). Every case needs a label map. ``work_folder`` keeps the
    input sets and the segmenter's outputs (default: a temporary folder that is deleted).
    """
    missing = sorted({f.case for f in case_files if f.labels is None})
    if missing:
        raise EvaluationError("The segmenter check needs reference labels; none for case(s) " + ", ".join(missing))
    cases: dict[str, CaseFiles] = {}
    for files in case_files:
        cases.setdefault(files.case, files)
    targets = sorted({f.target for f in case_files})
    temporary = None
    if work_folder is None:
        temporary = tempfile.TemporaryDirectory(prefix="synthunet_segmenter_check_")
        work_folder = temporary.name
    work_folder = Path(work_folder)
    try:
        real_input, real_output = work_folder / "real" / "input", work_folder / "real" / "output"
        _write_input_set(real_input, cases, {}, None)
        run_command(command, real_input, real_output, "real input set")
        real_segmentations = {case: _read_segmentation(real_output, case, "real input set") for case in cases}
        rows = []
        for target in targets:
            with_target = {f.case: f for f in case_files if f.target == target}
            predictions = {case: files.prediction for case, files in with_target.items()}
            synthetic_input = work_folder / f"synthetic_{target}" / "input"
            synthetic_output = work_folder / f"synthetic_{target}" / "output"
            _write_input_set(synthetic_input, with_target, predictions, target)
            description = f"synthetic input set ({target} replaced by the prediction)"
            run_command(command, synthetic_input, synthetic_output, description)
            for case, files in tqdm(sorted(with_target.items()), desc=f"Dice {target}", disable=not progress):
                reference_labels = read_image(files.labels, dtype=None)[0]
                for input_set, segmentation in (("real", real_segmentations[case]),
                                                ("synthetic", _read_segmentation(synthetic_output, case, description))):
                    if segmentation.shape != reference_labels.shape:
                        raise EvaluationError(f"Case {case}: the segmenter's label map on the {input_set} set has shape "
                                              f"{segmentation.shape}, the reference labels {reference_labels.shape}")
                    rows.append({"case": case, "target": target, "input_set": input_set,
                                 **brats_region_dice(reference_labels, segmentation)})
        return rows
    finally:
        if temporary is not None:
            temporary.cleanup()
