"""Merge the validation results of the cross-validation folds into one table.

Each fold's training writes ``fold_N/validation/per_case.csv`` and ``summary.json`` (through
:func:`synthunet.evaluation.evaluate_folders`). This module concatenates the per-case rows (adding a
``fold`` column) and recomputes the statistics over all cases, so the cross-validation result is the mean
over cases, not the mean of fold means. Output: ``crossval_results_folds_{folds}/`` in the model folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from synthunet.dataset.image_io import remove_stale_temporaries
from synthunet.evaluation.evaluate import (PER_CASE_COLUMNS, PER_CASE_FILE, PER_CASE_NUMERIC_COLUMNS, SEGMENTATION_FILE,
                                           SUMMARY_FILE)
from synthunet.evaluation.metrics import METRICS, EvaluationError
from synthunet.evaluation.results_io import read_csv_rows, summarise_rows, write_csv_atomic
from synthunet.evaluation.segmenter import SEGMENTATION_COLUMNS
from synthunet.prediction.model_folder import DEFAULT_PLANS, DEFAULT_TRAINER, model_folder_name
from synthunet.utilities.atomic_io import write_json_atomic

DEFAULT_FOLDS = (0, 1, 2, 3, 4)


def model_folder(dataset: str | int, configuration: str, target: str, trainer: str = DEFAULT_TRAINER,
                 plans: str = DEFAULT_PLANS) -> Path:
    """``$synthUNet_results/DatasetXXX_Name/{Trainer}__{Plans}__{configuration}__{TARGET}``."""
    from synthunet.dataset.identifiers import results_dataset_folder

    return results_dataset_folder(dataset) / model_folder_name(trainer, plans, configuration, target)


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EvaluationError(f"Cannot read {path}: {error}") from error


def _fold_normalisation(fold_summary: dict) -> str | None:
    """The normalisation a fold was evaluated with; summaries written before the option existed compared
    region-mode images as given (``"none"``) and brasyn mode always normalised (``"percentile"``)."""
    if "normalisation" in fold_summary:
        return fold_summary["normalisation"]
    mode = fold_summary.get("mode")
    return {"region": "none", "brasyn": "percentile"}.get(mode)


def accumulate_folds(folder: Path | str, folds: Sequence[int] = DEFAULT_FOLDS,
                     output_folder: Path | str | None = None) -> dict:
    """Merge ``folder/fold_N/validation/{per_case.csv, summary.json}`` over ``folds``; write and return the summary.

    Every listed fold must have been validated (missing files raise :class:`EvaluationError` naming them) and
    all folds must use the same evaluation mode and normalisation. A case that appears in two folds is an error.
    """
    folder = Path(folder)
    folds = [int(f) for f in folds]
    if not folds:
        raise EvaluationError("No folds given")
    missing = []
    for fold in folds:
        validation = folder / f"fold_{fold}" / "validation"
        for name in (PER_CASE_FILE, SUMMARY_FILE):
            if not (validation / name).is_file():
                missing.append(str(validation / name))
    if missing:
        raise EvaluationError("Cross-validation results are incomplete; missing:\n  - " + "\n  - ".join(missing)
                              + "\nRun the full-volume validation of these folds first (the training stage writes these files).")
    rows, segmentation_rows, fold_summaries, modes, normalisations = [], [], {}, {}, {}
    case_fold: dict[str, int] = {}
    duplicates = []
    for fold in folds:
        validation = folder / f"fold_{fold}" / "validation"
        fold_summary = _read_json(validation / SUMMARY_FILE)
        modes[fold] = fold_summary.get("mode")
        normalisations[fold] = _fold_normalisation(fold_summary)
        fold_summaries[str(fold)] = fold_summary.get("per_target", {})
        fold_rows = read_csv_rows(validation / PER_CASE_FILE, numeric=PER_CASE_NUMERIC_COLUMNS)
        for row in fold_rows:
            previous = case_fold.setdefault(row["case"], fold)
            if previous != fold:
                duplicates.append(f"{row['case']} (folds {previous} and {fold})")
            rows.append({"fold": fold, **row})
        if (validation / SEGMENTATION_FILE).is_file():
            for row in read_csv_rows(validation / SEGMENTATION_FILE, numeric=SEGMENTATION_COLUMNS[3:]):
                segmentation_rows.append({"fold": fold, **row})
    if len(set(modes.values())) > 1:
        raise EvaluationError(f"The folds were evaluated in different modes: {modes}")
    if len(set(normalisations.values())) > 1:
        raise EvaluationError(f"The folds were evaluated with different normalisations: {normalisations}")
    if duplicates:
        raise EvaluationError("Cases validated in more than one fold: " + ", ".join(sorted(set(duplicates))))
    if output_folder is None:
        output_folder = folder / f"crossval_results_folds_{'_'.join(str(f) for f in folds)}"
    output_folder = Path(output_folder)
    summary = {
        "model_folder": str(folder.resolve()),
        "folds": folds,
        "mode": next(iter(modes.values())),
        "normalisation": next(iter(normalisations.values())),
        "metrics": list(METRICS),
        "num_cases": len(case_fold),
        "per_target": summarise_rows(rows, METRICS),
        "per_fold": fold_summaries,
    }
    remove_stale_temporaries([output_folder / name for name in (PER_CASE_FILE, SEGMENTATION_FILE, SUMMARY_FILE)])
    write_csv_atomic(output_folder / PER_CASE_FILE, rows, ("fold", *PER_CASE_COLUMNS))
    if segmentation_rows:
        write_csv_atomic(output_folder / SEGMENTATION_FILE, segmentation_rows, ("fold", *SEGMENTATION_COLUMNS))
        summary["downstream_segmentation"] = {
            "per_target": summarise_rows(segmentation_rows, SEGMENTATION_COLUMNS[3:], ("target", "input_set"))}
    write_json_atomic(output_folder / SUMMARY_FILE, summary)
    summary["output_folder"] = str(output_folder.resolve())
    return summary


def accumulate_crossval(dataset: str | int, configuration: str, target: str, trainer: str = DEFAULT_TRAINER,
                        plans: str = DEFAULT_PLANS, folds: Sequence[int] = DEFAULT_FOLDS,
                        output_folder: Path | str | None = None) -> dict:
    """:func:`accumulate_folds` for the model folder of a dataset id, configuration, trainer, plans and target."""
    folder = model_folder(dataset, configuration, target, trainer, plans)
    if not folder.is_dir():
        raise EvaluationError(f"Model folder {folder} does not exist (check -d, -c, -tr, -p and --target)")
    return accumulate_folds(folder, folds, output_folder)


def format_summary_table(per_target: dict, metrics: Sequence[str] = ("SSIM", "PSNR", "MAE", "NCC")) -> str:
    """A plain-text table: one line per target and region with ``mean +- std`` of each metric."""
    lines = [f"{'target':<8} {'region':<10} {'n':>4} " + " ".join(f"{m:>20}" for m in metrics)]
    for target, regions in per_target.items():
        for region, values in regions.items():
            count = max((values[m]["n"] for m in metrics if m in values), default=0)
            cells = []
            for metric in metrics:
                stats = values.get(metric)
                cells.append(f"{'-':>20}" if stats is None or stats["n"] == 0
                             else f"{stats['mean']:>11.4f} +- {stats['std']:<6.4f}")
            lines.append(f"{target:<8} {region:<10} {count:>4} " + " ".join(cells))
    return "\n".join(lines)
