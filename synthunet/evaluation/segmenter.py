"""Downstream check: does a tumour segmenter work as well on synthetic inputs as on real ones?

The user gives a command template with ``{input}`` and ``{output}`` placeholders, e.g.
``"nnUNetv2_predict -i {input} -o {output} -d 137 -c 3d_fullres"`` or synthUNet's own
``"synth_segment -i {input} -o {output} -d 501 -f 0"``. The evaluator writes input sets in raw format
(``{case}_{XXXX}.nii.gz``): the real images (``real``), and per target the same images with the target
channel replaced by the prediction (``synthetic``) or by zeros (``missing``: what the segmenter does
without the sequence, the floor a synthetic sequence has to beat). It runs the command once per set (no
shell; the template is split with :func:`shlex.split`), reads the label maps ``{output}/{case}.nii.gz`` and
scores them against the reference labels with Dice per BraTS region. The regions are sets of label values
given by the label scheme (:mod:`synthunet.dataset.label_scheme`): dataset.json's labels or nnU-Net regions,
BraTS 2023 by default (WT = {1, 2, 3}, TC = {1, 3}, ET = {3}). A segmenter that numbers its labels
differently (nnU-Net's Dataset137: 1 edema, 2 necrosis, 3 enhancing) is scored with its own scheme
(``segmenter_label_scheme``), so each region compares the same tissue.
"""
from __future__ import annotations

import math
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from synthunet.dataset.dataset_json import SUPPORTED_FILE_ENDINGS
from synthunet.dataset.image_io import read_image, write_image
from synthunet.dataset.label_scheme import LabelScheme, brats_2023_scheme
from synthunet.errors import SynthUNetError
from synthunet.evaluation.layout import CaseFiles, file_ending_of
from synthunet.evaluation.metrics import BRATS_REGIONS, EvaluationError, brats_region_dice

SEGMENTATION_COLUMNS = ("case", "target", "input_set", *BRATS_REGIONS)
#: the input sets, in report order: real images, target replaced by the prediction, target replaced by zeros
INPUT_SETS = ("real", "synthetic", "missing")
_SET_DESCRIPTIONS = {"real": "real input set", "synthetic": "synthetic input set ({target} replaced by the prediction)",
                     "missing": "missing input set ({target} replaced by zeros)"}


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


def _place_zeros(reference: Path, destination_stem: Path, ending: str) -> None:
    """Write an all-zero image with the geometry and data type of ``reference`` to ``{destination_stem}{ending}``."""
    array, geometry = read_image(reference, dtype=None)
    write_image(np.zeros_like(array), geometry, destination_stem.with_name(destination_stem.name + ending))


def _write_input_set(folder: Path, cases: dict[str, CaseFiles], input_set: str, target: str | None) -> None:
    """Every reference channel of every case; the target's file is the prediction (``synthetic``) or zeros
    (``missing``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for case, files in cases.items():
        for name, path in files.channels.items():
            index = files.channel_indices.get(name)
            if index is None:
                raise EvaluationError(f"No channel index for channel {name} of case {case}")
            stem = folder / f"{case}_{index:04d}"
            if name == target and input_set == "missing":
                _place_zeros(path, stem, files.file_ending)
            else:
                _place(files.prediction if (name == target and input_set == "synthetic") else path, stem,
                       files.file_ending)


def _read_segmentation(output_folder: Path, case: str, description: str) -> np.ndarray:
    for ending in SUPPORTED_FILE_ENDINGS:
        candidate = output_folder / f"{case}{ending}"
        if candidate.is_file():
            return read_image(candidate, dtype=None)[0]
    raise EvaluationError(f"The segmenter wrote no label map for case {case} on the {description} "
                          f"(expected {output_folder}/{case}.nii.gz)")


def _segment(command: str, work_folder: Path, cases: dict[str, CaseFiles], input_set: str,
             target: str | None) -> tuple[Path, str]:
    """Write one input set and run the segmenter on it; return its output folder and the set's description.

    Every label map must be there (checked now); they are read one case at a time later, to bound memory.
    """
    name = input_set if target is None else f"{input_set}_{target}"
    input_folder, output_folder = work_folder / name / "input", work_folder / name / "output"
    description = _SET_DESCRIPTIONS[input_set].format(target=target)
    _write_input_set(input_folder, cases, input_set, target)
    run_command(command, input_folder, output_folder, description)
    absent = [case for case in cases
              if not any((output_folder / f"{case}{ending}").is_file() for ending in SUPPORTED_FILE_ENDINGS)]
    if absent:
        raise EvaluationError(f"The segmenter wrote no label map for case(s) {', '.join(absent[:10])} on the "
                              f"{description} (expected {output_folder}/{{case}}.nii.gz)")
    return output_folder, description


def segmenter_regions(label_scheme: LabelScheme, segmenter_label_scheme: LabelScheme | None = None
                      ) -> tuple[str, ...]:
    """The BraTS regions both schemes map (in WT, TC, ET order). None: raise
    :class:`~synthunet.dataset.label_scheme.LabelSchemeError` naming the labels that could not be mapped; some
    missing: warn, naming them (their Dice columns stay NaN)."""
    schemes = [label_scheme] + ([segmenter_label_scheme] if segmenter_label_scheme is not None else [])
    regions = tuple(r for r in BRATS_REGIONS if all(r in s.regions for s in schemes))
    if not regions:
        for scheme in schemes:
            scheme.check_regions(BRATS_REGIONS)
    missing = [r for r in BRATS_REGIONS if r not in regions]
    if missing:
        reasons = "; ".join(f"{r}: {s.unmapped[r]} ({s.source})" for r in missing for s in schemes
                            if r in s.unmapped)
        warnings.warn(f"The segmenter check reports Dice for {', '.join(regions)} only; region(s) "
                      f"{', '.join(missing)} cannot be mapped ({reasons}); their Dice is left empty", stacklevel=2)
    return regions


def run_segmenter_check(case_files: Sequence[CaseFiles], command: str, work_folder: Path | str | None = None,
                        progress: bool = True, input_sets: Sequence[str] = INPUT_SETS,
                        label_scheme: LabelScheme | None = None,
                        segmenter_label_scheme: LabelScheme | None = None) -> list[dict]:
    """Run the segmenter on the input sets; return one row per case x target x input set.

    Rows hold ``case``, ``target``, ``input_set`` (``"real"``, ``"synthetic"`` or ``"missing"``) and Dice
    ``WT``, ``TC``, ``ET`` against the reference labels (the real-set row is repeated for every target of the
    case so each target's rows pair up). ``input_sets`` chooses the sets (default all three; the real set is
    run once, the others once per target). Every case needs a label map. ``work_folder`` keeps the input
    sets and the segmenter's outputs (default: a temporary folder that is deleted).

    ``label_scheme``: the reference labels' numbering and regions (default BraTS 2023);
    ``segmenter_label_scheme``: the segmenter's output numbering when it differs (default the same). A
    region that either cannot map is NaN in every row (with a warning); if none can be mapped,
    :class:`~synthunet.dataset.label_scheme.LabelSchemeError` names the labels.
    """
    unknown = [s for s in input_sets if s not in INPUT_SETS]
    if unknown or not input_sets:
        raise EvaluationError(f"Unknown or no segmenter input set(s) {unknown or list(input_sets)}; choose from "
                              f"{', '.join(INPUT_SETS)}")
    input_sets = [s for s in INPUT_SETS if s in input_sets]
    label_scheme = label_scheme or brats_2023_scheme()
    regions = segmenter_regions(label_scheme, segmenter_label_scheme)
    unmapped = {r: math.nan for r in BRATS_REGIONS if r not in regions}
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
        outputs = {"real": _segment(command, work_folder, cases, "real", None)} if "real" in input_sets else {}
        rows = []
        for target in targets:
            with_target = {f.case: f for f in case_files if f.target == target}
            for input_set in input_sets:
                if input_set != "real":
                    outputs[input_set] = _segment(command, work_folder, with_target, input_set, target)
            for case, files in tqdm(sorted(with_target.items()), desc=f"Dice {target}", disable=not progress):
                reference_labels = read_image(files.labels, dtype=None)[0]
                for input_set in input_sets:
                    folder, description = outputs[input_set]
                    segmentation = _read_segmentation(folder, case, description)
                    if segmentation.shape != reference_labels.shape:
                        raise EvaluationError(f"Case {case}: the segmenter's label map on the {input_set} set has "
                                              f"shape {segmentation.shape}, the reference labels "
                                              f"{reference_labels.shape}")
                    try:
                        dice = brats_region_dice(reference_labels, segmentation, label_scheme, regions,
                                                 prediction_scheme=segmenter_label_scheme)
                    except EvaluationError as error:
                        raise EvaluationError(f"Case {case}, {input_set} set: {error}") from None
                    except SynthUNetError as error:
                        raise type(error)(f"Case {case}, {input_set} set: {error}", hint=error.hint) from None
                    rows.append({"case": case, "target": target, "input_set": input_set, **dice, **unmapped})
        return rows
    finally:
        if temporary is not None:
            temporary.cleanup()


def format_segmentation_table(per_target: dict, markdown: bool = False) -> str:
    """Mean +- std Dice per target and input set (``summary["downstream_segmentation"]["per_target"]``).

    Plain text for the console, or a markdown table with ``markdown=True``.
    """
    header = ["target", "input set", "n", *BRATS_REGIONS]
    lines = []
    for target, sets in per_target.items():
        for input_set in sorted(sets, key=lambda s: INPUT_SETS.index(s) if s in INPUT_SETS else len(INPUT_SETS)):
            values = sets[input_set]
            count = max((values[r]["n"] for r in BRATS_REGIONS if r in values), default=0)
            cells = ["-" if r not in values or values[r]["n"] == 0
                     else f"{values[r]['mean']:.4f} ± {values[r]['std']:.4f}" for r in BRATS_REGIONS]
            lines.append([target, input_set, str(count), *cells])
    if markdown:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [8, 10, 4] + [17] * len(BRATS_REGIONS)
    return "\n".join(" ".join(f"{cell:<{w}}" if i < 2 else f"{cell:>{w}}" for i, (cell, w) in
                              enumerate(zip(line, widths))) for line in [header, *lines])
