"""Evaluate a folder of predictions against a folder of references; write per_case.csv and summary.json.

This is the Python API the training stage (validation) and the ``synth_evaluate`` command use::

    from synthunet.evaluation import evaluate_folders
    summary = evaluate_folders(gt_folder, prediction_folder, output_folder=fold_folder / "validation",
                               labels_folder=raw / "labelsTr", masks_folder=raw / "masksTr",
                               dataset_json=raw / "dataset.json", cases=validation_cases)
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from synthunet.dataset.image_io import read_image
from synthunet.errors import SynthUNetError
from synthunet.evaluation import ssim as ssim_module
from synthunet.dataset.label_scheme import LabelScheme
from synthunet.evaluation.layout import CaseFiles, channel_names_from, label_scheme_from, match_folders
from synthunet.evaluation.metrics import (DEFAULT_NORMALISATION, METRICS, MODES, PSNR_CAP_DB, EvaluationError,
                                          check_normalisation, evaluate_case, normalisation_settings)
from synthunet.dataset.image_io import remove_stale_temporaries
from synthunet.evaluation.results_io import summarise_rows, write_csv_atomic
from synthunet.utilities.atomic_io import write_json_atomic, write_text_atomic
from synthunet.utilities.parallel import run_parallel
from synthunet.evaluation.segmenter import (INPUT_SETS, SEGMENTATION_COLUMNS, format_segmentation_table,
                                            run_segmenter_check)

PER_CASE_NUMERIC_COLUMNS = ("n_voxels", *METRICS, "psnr_data_range", "ssim_data_range")
PER_CASE_COLUMNS = ("case", "target", "region", *PER_CASE_NUMERIC_COLUMNS, "normalisation")
SUMMARY_FILE = "summary.json"
PER_CASE_FILE = "per_case.csv"
SEGMENTATION_FILE = "segmentation_dice.csv"


def load_case_arrays(files: CaseFiles) -> dict[str, np.ndarray | None]:
    """Read reference, prediction, labels and mask of a case; check that their shapes agree."""
    reference, reference_geometry = read_image(files.reference, dtype=np.float64)
    prediction, prediction_geometry = read_image(files.prediction, dtype=np.float64)
    differences = reference_geometry.differences(prediction_geometry)
    if reference.shape != prediction.shape:
        raise EvaluationError(f"shape {prediction.shape} of {files.prediction} differs from shape {reference.shape} "
                              f"of {files.reference}")
    if differences:
        warnings.warn(f"Case {files.case} ({files.target}): prediction {files.prediction.name} and reference "
                      f"{files.reference.name} differ in {'; '.join(differences)}; comparing voxel by voxel",
                      stacklevel=2)
    arrays: dict[str, np.ndarray | None] = {"reference": reference, "prediction": prediction, "labels": None,
                                             "mask": None}
    for key, path in (("labels", files.labels), ("mask", files.mask)):
        if path is not None:
            array = read_image(path, dtype=None)[0]
            if array.shape != reference.shape:
                raise EvaluationError(f"{key} {path} has shape {array.shape}, the reference {files.reference} "
                                      f"{reference.shape}")
            arrays[key] = np.rint(array).astype(np.int16) if key == "labels" else array != 0
    return arrays


def evaluate_case_files(files: CaseFiles, mode: str = "region", data_range: float | str | None = None,
                        label_names: dict[int, str] | None = None,
                        normalisation: str = DEFAULT_NORMALISATION,
                        label_scheme: LabelScheme | None = None) -> list[dict]:
    """Evaluate one matched case; return per-case CSV rows (one per region). Errors name the case and files.

    Each row holds the ``per_case.csv`` columns, ``normalisation`` included. ``label_scheme`` names the
    per-label regions (default BraTS 2023), ``label_names`` overrides its names.
    """
    try:
        arrays = load_case_arrays(files)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="brasyn mode without labels")
            results = evaluate_case(arrays["reference"], arrays["prediction"], arrays["mask"], arrays["labels"],
                                    mode=mode, data_range=data_range, label_names=label_names,
                                    normalisation=normalisation, label_scheme=label_scheme)
    except EvaluationError as error:
        raise EvaluationError(f"Case {files.case} ({files.target}; reference {files.reference}, prediction "
                              f"{files.prediction}): {error}") from None
    except (SynthUNetError, OSError) as error:  # unreadable image files, a case too small for the SSIM window
        raise EvaluationError(f"Case {files.case} ({files.target}): {error}",
                              hint=getattr(error, "hint", None)) from None
    return [{"case": files.case, "target": files.target, "region": region, **values, "normalisation": normalisation}
            for region, values in results.items()]


def _evaluate_job(job: tuple) -> list[dict]:
    return evaluate_case_files(*job)


def warn_if_replacing(summary_path: Path, prediction_folder: str) -> None:
    """Warn that an earlier evaluation in the same place is replaced, naming the predictions it scored."""
    if not summary_path.is_file():
        return
    try:
        previous = json.loads(summary_path.read_text()).get("prediction_folder", "unknown predictions")
    except (OSError, ValueError):
        previous = "unreadable summary"
    same = " (the same prediction folder)" if previous == prediction_folder else ""
    warnings.warn(f"Replacing the evaluation in {summary_path.parent} (it scored {previous}){same}",
                  stacklevel=3)


def summary_paths(output: Path | str) -> tuple[Path, Path, Path]:
    """(summary.json, per_case.csv, segmentation_dice.csv) for an output folder or a ``*.json`` summary path.

    A ``.json`` path names the summary itself; the CSVs go next to it.
    """
    output = Path(output)
    if output.suffix.lower() == ".json":
        return output, output.with_name(PER_CASE_FILE), output.with_name(SEGMENTATION_FILE)
    return output / SUMMARY_FILE, output / PER_CASE_FILE, output / SEGMENTATION_FILE


def evaluate_folders(reference_folder: Path | str, prediction_folder: Path | str,
                     output_folder: Path | str | None = None, *, labels_folder: Path | str | None = None,
                     masks_folder: Path | str | None = None, mode: str = "region",
                     data_range: float | str | None = None, dataset_json: Path | str | None = None,
                     dataset: str | int | None = None, target: str | None = None,
                     targets: Sequence[str] | None = None, cases: Sequence[str] | None = None,
                     allow_missing: bool = False, num_processes: int = 1, segmenter: str | None = None,
                     segmenter_work_folder: Path | str | None = None, summary_file: Path | str | None = None,
                     per_case_file: Path | str | None = None, progress: bool = True,
                     normalisation: str = DEFAULT_NORMALISATION,
                     segmenter_sets: Sequence[str] = INPUT_SETS,
                     segmenter_dataset_json: Path | str | None = None) -> dict:
    """Evaluate every prediction of a folder against its reference.

    Returns the summary (what ``summary.json`` holds) plus ``"rows"``: the per-case rows (dicts with the
    ``per_case.csv`` columns) and, with a segmenter, ``"segmentation_rows"``.

    Args:
        reference_folder: ground truth images (raw ``{case}_{XXXX}`` or BraTS layout).
        prediction_folder: predicted images (raw, BraTS flat ``{case}-{seq}`` or BraTS case folders).
        output_folder: when given, ``summary.json`` and ``per_case.csv`` (and ``segmentation_dice.csv`` and the
            table ``segmentation_dice.md`` with ``segmenter``) are written there atomically. A path ending in
            ``.json`` names the summary file.
        labels_folder: tumour labels (``{case}.nii.gz`` or ``{case}-seg.nii.gz``); default: the BraTS ``-seg``
            files of the reference folder, if any.
        masks_folder: brain masks (``{case}.nii.gz``); default: the reference's non-zero voxels, holes filled.
        mode: ``"region"`` (synthUNet) or ``"brasyn"`` (BraSyn organisers), see :mod:`synthunet.evaluation.metrics`.
        data_range: see :func:`synthunet.evaluation.metrics.evaluate_case`.
        dataset_json / dataset: where channel index -> name come from for raw files, and the labels: which
            value is which tumour label and the WT / TC / ET regions (:mod:`synthunet.dataset.label_scheme`;
            plain labels or nnU-Net regions). Without either, or when it declares no labels: BraTS 2023
            (1 NCR, 2 ED, 3 ET). Recorded in ``summary.json`` (``label_scheme``).
        target: channel name of prediction files named ``{case}.nii.gz``.
        targets: only these channels; cases: only these case ids (e.g. a fold's validation cases).
        allow_missing: skip unmatched files with a warning instead of raising :class:`EvaluationError`.
        num_processes: worker processes over cases (1 = in this process).
        segmenter: command template with ``{input}``/``{output}`` for the downstream segmentation check.
        segmenter_work_folder: keep the segmenter's input sets and outputs there (default: temporary).
        segmenter_sets: the segmenter's input sets: ``real``, ``synthetic`` (target replaced by the prediction)
            and ``missing`` (target replaced by zeros); default all three.
        segmenter_dataset_json: the dataset.json of the segmenter's training data, when its label maps are
            numbered differently from the reference labels (e.g. nnU-Net's Dataset137: 1 edema, 2 necrosis,
            3 enhancing, with regions); each region's Dice then compares the same tissue. Default: the
            segmenter numbers its labels as the reference does.
        summary_file / per_case_file: explicit output paths (override ``output_folder``).
        progress: show tqdm progress bars.
        normalisation: region mode: ``"percentile"`` (default; each volume rescaled by its own [0.5, 99.5]
            percentiles inside the brain mask, so per-scan gains do not count) or ``"none"`` (images already
            on one scale, e.g. the training validation on the preprocessed scale). Brasyn mode: only
            ``"percentile"`` (its own whole-volume normalisation). Recorded in ``summary.json``
            (``normalisation`` and ``settings.normalisation``) and in the ``normalisation`` CSV column.
    """
    if mode not in MODES:
        raise EvaluationError(f"mode must be one of {MODES}, got {mode!r}")
    normalisation = check_normalisation(normalisation, mode)
    channel_names = channel_names_from(dataset_json, dataset)
    label_scheme = label_scheme_from(dataset_json, dataset)
    segmenter_scheme = None if segmenter_dataset_json is None else label_scheme_from(segmenter_dataset_json)
    matched = match_folders(reference_folder, prediction_folder, labels_folder, masks_folder, channel_names,
                            target=target, targets=list(targets) if targets else None,
                            cases=list(cases) if cases is not None else None, allow_missing=allow_missing,
                            require_labels=segmenter is not None)
    jobs = [(files, mode, data_range, None, normalisation, label_scheme) for files in matched]
    rows = [row for case_rows in run_parallel(_evaluate_job, jobs, num_processes, progress, "Evaluating")
            for row in case_rows]

    summary = {
        "mode": mode,
        "normalisation": normalisation,
        "reference_folder": str(Path(reference_folder).resolve()),
        "prediction_folder": str(Path(prediction_folder).resolve()),
        "labels_folder": None if labels_folder is None else str(Path(labels_folder).resolve()),
        "masks_folder": None if masks_folder is None else str(Path(masks_folder).resolve()),
        "settings": {
            "data_range": data_range if data_range is not None else ("region" if mode == "region" else "brasyn"),
            "normalisation": normalisation_settings(mode, normalisation),
            "ssim": {"window": "gaussian", "sigma": ssim_module.SIGMA, "truncate": ssim_module.TRUNCATE,
                     "window_size": 2 * ssim_module.window_radius() + 1, "K1": ssim_module.K1, "K2": ssim_module.K2},
            "psnr_cap_db": PSNR_CAP_DB,
            "brain_mask": "masks_folder" if masks_folder is not None else "reference non-zero voxels, holes filled",
        },
        "label_scheme": label_scheme.describe(),
        "metrics": list(METRICS),
        "targets": sorted({files.target for files in matched}),
        "num_cases": len({files.case for files in matched}),
        "cases": sorted({files.case for files in matched}),
        "per_target": summarise_rows(rows, METRICS),
    }
    segmentation_rows: list[dict] = []
    if segmenter is not None:
        segmentation_rows = run_segmenter_check(matched, segmenter, segmenter_work_folder, progress=progress,
                                                input_sets=segmenter_sets, label_scheme=label_scheme,
                                                segmenter_label_scheme=segmenter_scheme)
        summary["downstream_segmentation"] = {
            "command": segmenter,
            "segmenter_label_scheme": (segmenter_scheme or label_scheme).describe(),
            "per_target": summarise_rows(segmentation_rows, SEGMENTATION_COLUMNS[3:], ("target", "input_set")),
        }
    if output_folder is not None or summary_file is not None or per_case_file is not None:
        default_summary, default_csv, default_segmentation = summary_paths(output_folder or Path(summary_file).parent)
        summary_path = Path(summary_file) if summary_file is not None else default_summary
        csv_path = Path(per_case_file) if per_case_file is not None else default_csv
        segmentation_table = default_segmentation.with_suffix(".md")
        remove_stale_temporaries([csv_path, default_segmentation, segmentation_table, summary_path])  # killed runs'
        warn_if_replacing(summary_path, summary["prediction_folder"])
        if not segmentation_rows:  # a segmenter table of an earlier run would no longer match this summary
            for stale in (default_segmentation, segmentation_table):
                stale.unlink(missing_ok=True)
        write_csv_atomic(csv_path, rows, PER_CASE_COLUMNS)
        if segmentation_rows:
            write_csv_atomic(default_segmentation, segmentation_rows, SEGMENTATION_COLUMNS)
            write_text_atomic(segmentation_table, "Downstream segmentation, Dice mean ± std over cases (command: `"
                              + segmenter + "`)\n\n" + format_segmentation_table(
                                  summary["downstream_segmentation"]["per_target"], markdown=True) + "\n")
        summary["files"] = {"summary": str(summary_path.resolve()), "per_case": str(csv_path.resolve()),
                            "segmentation_dice": str(default_segmentation.resolve()) if segmentation_rows else None,
                            "segmentation_table": str(segmentation_table.resolve()) if segmentation_rows else None}
        write_json_atomic(summary_path, summary)
    summary["rows"] = rows
    if segmentation_rows:
        summary["segmentation_rows"] = segmentation_rows
    return summary
