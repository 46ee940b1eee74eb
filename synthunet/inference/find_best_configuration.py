"""``synth_find_best_configuration``: choose the configuration (or ensemble of configurations) to predict with.

The cross-validation predictions of a model are its folds' full-volume validation predictions,
``{model folder}/fold_N/validation/{case}_{XXXX}.nii.gz``, scored against
``fold_N/validation_reference/images/`` inside the brain mask ``validation_reference/masks/``
(documentation/model_folder_format.md). For one target, trainer and plans, every configuration is scored
on the cases of all requested folds pooled, and so is every ensemble of two or more configurations: the
voxel-wise mean of their predictions of a case (scored only where they lie on one grid, as they do when the
configurations share their spacing). The score is the
region-mode metric of ``synth_evaluate`` (:func:`synthunet.evaluation.metrics.evaluate_case`, brain region,
percentile normalisation by default). The candidate with the highest mean brain SSIM wins; candidates within
:data:`TIE_TOLERANCE` of it are decided by the mean brain PSNR, then by fewer configurations.

Written (only when every check passed, each file under a temporary name, then renamed):
``$synthUNet_results/DatasetXXX_Name/inference_information_{TARGET}.json`` and ``.md`` beside it. ``synth_predict
-c best`` follows the JSON (:mod:`synthunet.inference.best_configuration`, where the file name is defined).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.dataset.dataset_json import DatasetJsonError, image_file_name, load_dataset_json
from synthunet.dataset.identifiers import resolve_dataset_name, results_dataset_folder
from synthunet.dataset.image_io import read_image, remove_stale_temporaries
from synthunet.errors import SynthUNetError
from synthunet.evaluation.crossval import DEFAULT_FOLDS
from synthunet.evaluation.evaluate import SUMMARY_FILE
from synthunet.evaluation.metrics import (DEFAULT_NORMALISATION, NORMALISATIONS, EvaluationError, check_normalisation,
                                          evaluate_case)
from synthunet.evaluation.results_io import statistics
from synthunet.inference.best_configuration import INFORMATION_VERSION, inference_information_path
from synthunet.inference.ensemble_folders import EnsembleError, average_images, check_geometries
from synthunet.prediction.model_folder import DEFAULT_PLANS, DEFAULT_TRAINER, model_folder_name
from synthunet.utilities.atomic_io import write_json_atomic, write_text_atomic
from synthunet.utilities.parallel import run_parallel

#: the selection metric, its tie-break, and how close two mean SSIMs must be to count as a tie
REGION = "brain"
SELECTION_METRIC = "SSIM"
TIE_BREAK_METRIC = "PSNR"
TIE_TOLERANCE = 1e-4
#: validation files (documentation/model_folder_format.md); the prediction files are written with this ending
VALIDATION_FOLDER = "validation"
REFERENCE_FOLDER = "validation_reference"
VALIDATION_FILE_ENDING = ".nii.gz"
#: with --normalisation none the images are on the preprocessed (Nyúl / 100) scale, whose range is 1
NORMALISED_SCALE_DATA_RANGE = 1.0
_SHOWN = 10


@dataclass(frozen=True)
class ValidationCase:
    """One case of a configuration's cross-validation: its fold, prediction, reference and brain mask."""

    case: str
    fold: int
    prediction: Path
    reference: Path
    mask: Path


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    return ", ".join(items[:_SHOWN]) + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def trained_configurations(folder: Path, target: str, trainer: str, plans: str) -> list[str]:
    """Configurations with a model folder ``{trainer}__{plans}__{configuration}__{target}`` in ``folder``."""
    prefix, suffix = f"{trainer}__{plans}__", f"__{target}"
    if not folder.is_dir():
        return []
    return sorted(child.name[len(prefix):-len(suffix)] for child in folder.iterdir()
                  if child.is_dir() and child.name.startswith(prefix) and child.name.endswith(suffix)
                  and len(child.name) > len(prefix) + len(suffix))


def _fold_cases(summary_file: Path) -> list[str]:
    try:
        cases = json.loads(summary_file.read_text())["cases"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise EvaluationError(f"Cannot read the validated cases from {summary_file}: {error}") from None
    return [str(c) for c in cases]


def collect_validation(folder: Path, target: str, folds: Sequence[int], configuration: str = ""
                       ) -> tuple[dict[str, ValidationCase], list[str]]:
    """The validation cases of every fold of one model folder (case -> files), and what is missing."""
    problems: list[str] = []
    who = f"configuration {configuration or folder.name} ({folder})"
    try:
        channel = load_dataset_json(folder / "dataset.json").channel_index(target)
    except (DatasetJsonError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        return {}, [f"{who}: {message}"]
    missing_folds = [f for f in folds if not (folder / f"fold_{f}" / VALIDATION_FOLDER / SUMMARY_FILE).is_file()]
    if missing_folds:
        problems.append(f"{who} lacks the validation predictions of fold {', '.join(map(str, missing_folds))} "
                        f"(no fold_N/{VALIDATION_FOLDER}/{SUMMARY_FILE}: train these folds to the end, or pass -f "
                        "with the folds every configuration has)")
    cases: dict[str, ValidationCase] = {}
    for fold in folds:
        if fold in missing_folds:
            continue
        fold_folder = folder / f"fold_{fold}"
        missing_files = []
        for case in _fold_cases(fold_folder / VALIDATION_FOLDER / SUMMARY_FILE):
            name = image_file_name(case, channel, VALIDATION_FILE_ENDING)
            entry = ValidationCase(case, fold, fold_folder / VALIDATION_FOLDER / name,
                                   fold_folder / REFERENCE_FOLDER / "images" / name,
                                   fold_folder / REFERENCE_FOLDER / "masks" / f"{case}{VALIDATION_FILE_ENDING}")
            missing_files += [str(p.relative_to(folder)) for p in (entry.prediction, entry.reference, entry.mask)
                              if not p.is_file()]
            if case in cases:
                problems.append(f"{who}: case {case} is validated in folds {cases[case].fold} and {fold}")
            cases[case] = entry
        if missing_files:
            problems.append(f"{who} fold {fold} lacks {_listing(missing_files)}")
    return cases, problems


def check_same_cases(per_configuration: dict[str, dict[str, ValidationCase]]) -> list[str]:
    """The cases, which must be the same for every configuration (else :class:`EvaluationError` naming them)."""
    all_cases = sorted(set().union(*(set(c) for c in per_configuration.values())))
    problems = []
    for configuration, cases in per_configuration.items():
        absent = [c for c in all_cases if c not in cases]
        if absent:
            others = [o for o, c in per_configuration.items() if o != configuration and set(absent) & set(c)]
            problems.append(f"{configuration} has no prediction of {_listing(absent)} (which {', '.join(others)} "
                            "predicted)")
    if problems:
        raise EvaluationError("The configurations' cross-validation predictions are of different cases: "
                              + "; ".join(problems) + ". Compare models trained on the same splits and folds.")
    return all_cases


def candidate_name(configurations: Sequence[str]) -> str:
    return configurations[0] if len(configurations) == 1 else "ensemble(" + " + ".join(configurations) + ")"


def _ensemble_problem(per_configuration: dict[str, dict[str, ValidationCase]], members: Sequence[str],
                      cases: Sequence[str]) -> str | None:
    """Why the members' predictions cannot be averaged voxel by voxel (different grids), else None."""
    for case in cases:
        try:
            check_geometries([per_configuration[m][case].prediction for m in members])
        except EnsembleError as error:
            return f"case {case}: {error}"
    return None


def _score_job(job: tuple) -> dict[str, float]:
    """Brain metrics of one case of one candidate: the mean of its members' predictions against the reference."""
    case, predictions, references, mask_file, normalisation, data_range = job
    try:
        prediction, _ = average_images(predictions)
        reference, _ = read_image(references[0], dtype=np.float64)
        for other in references[1:]:
            if not np.allclose(read_image(other, dtype=np.float64)[0], reference, rtol=1e-5, atol=1e-6):
                raise EvaluationError(f"the references {references[0]} and {other} differ; the configurations were "
                                      "not validated on the same preprocessed data")
        mask = read_image(mask_file, dtype=None)[0] != 0
        brain = evaluate_case(reference, prediction, brain_mask=mask, mode="region", data_range=data_range,
                              normalisation=normalisation)[REGION]
    except (SynthUNetError, OSError) as error:  # a bug keeps its traceback
        raise EvaluationError(f"Case {case} ({', '.join(str(p) for p in predictions)}): {error}") from None
    return {SELECTION_METRIC: brain[SELECTION_METRIC], TIE_BREAK_METRIC: brain[TIE_BREAK_METRIC]}


def choose(candidates: Sequence[dict], tolerance: float = TIE_TOLERANCE) -> dict:
    """The candidate with the highest mean brain SSIM; within ``tolerance`` of it, the highest mean brain PSNR,
    then the fewest configurations, then the first listed."""
    scored = [c for c in candidates if np.isfinite(c[SELECTION_METRIC]["mean"])]
    if not scored:
        raise EvaluationError("No candidate has a finite mean brain SSIM")
    top = max(c[SELECTION_METRIC]["mean"] for c in scored)
    tied = [c for c in scored if c[SELECTION_METRIC]["mean"] >= top - tolerance]

    def tie_break(candidate: dict) -> tuple:
        psnr = candidate[TIE_BREAK_METRIC]["mean"]
        return (psnr if np.isfinite(psnr) else -np.inf, -len(candidate["configurations"]))

    best = max(tie_break(c) for c in tied)
    return next(c for c in tied if tie_break(c) == best)


def find_best_configuration(dataset: str | int, target: str, configurations: Sequence[str] | None = None,
                            folds: Sequence[int] = DEFAULT_FOLDS, trainer: str = DEFAULT_TRAINER,
                            plans: str = DEFAULT_PLANS, normalisation: str = DEFAULT_NORMALISATION,
                            num_processes: int = 1, output_folder: Path | str | None = None,
                            progress: bool = True) -> dict:
    """Score every configuration and ensemble, choose, write ``inference_information_{target}.json`` and ``.md``.

    ``configurations`` None = every configuration trained for the target (a model folder exists). Every
    requested configuration must have the validation predictions of every fold in ``folds``, and all must
    have predicted the same cases; otherwise :class:`EvaluationError` names what is missing and nothing is
    written. Returns the content of the JSON file (plus ``"files"``).
    """
    normalisation = check_normalisation(normalisation, "region")
    data_range = NORMALISED_SCALE_DATA_RANGE if normalisation == "none" else None
    folds = [int(f) for f in folds]
    if not folds or len(set(folds)) != len(folds):
        raise EvaluationError(f"Give each fold once, at least one: {folds}")
    dataset_name = resolve_dataset_name(dataset)
    results = results_dataset_folder(dataset)
    pattern = model_folder_name(trainer, plans, "CONFIGURATION", target)
    if configurations is None:
        configurations = trained_configurations(results, target, trainer, plans)
        if not configurations:
            present = sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
            raise EvaluationError(f"No trained configuration for {target}: no model folder {pattern} in {results} "
                                  f"(it holds: {', '.join(present) or 'nothing'}). Train one with synth_train, or "
                                  "check -t, -tr and -p.")
    configurations = list(dict.fromkeys(configurations))
    if not configurations:
        raise EvaluationError("No configuration given")
    problems = []
    per_configuration: dict[str, dict[str, ValidationCase]] = {}
    for configuration in configurations:
        folder = results / model_folder_name(trainer, plans, configuration, target)
        if not folder.is_dir():
            problems.append(f"configuration {configuration} is not trained for {target} (no {folder})")
            continue
        cases, folder_problems = collect_validation(folder, target, folds, configuration)
        problems += folder_problems
        per_configuration[configuration] = cases
    if problems:
        raise EvaluationError(f"Cannot choose a configuration for {dataset_name} {target} (folds "
                              f"{', '.join(map(str, folds))}): " + "; ".join(problems))
    cases = check_same_cases(per_configuration)

    members_list = [combination for size in range(1, len(configurations) + 1)
                    for combination in itertools.combinations(configurations, size)]
    skipped = {}
    jobs, owners = [], []
    for members in members_list:
        if len(members) > 1:
            problem = _ensemble_problem(per_configuration, members, cases)
            if problem is not None:
                skipped[candidate_name(members)] = problem
                continue
        for case in cases:
            entries = [per_configuration[m][case] for m in members]
            jobs.append((case, [e.prediction for e in entries], [e.reference for e in entries], entries[0].mask,
                         normalisation, data_range))
            owners.append(members)
    scores = list(run_parallel(_score_job, jobs, num_processes, progress, "Scoring candidates"))
    candidates = []
    for members in members_list:
        if candidate_name(members) in skipped:
            continue
        values = [s for s, owner in zip(scores, owners) if owner == members]
        candidates.append({"name": candidate_name(members), "configurations": list(members),
                           SELECTION_METRIC: statistics(v[SELECTION_METRIC] for v in values),
                           TIE_BREAK_METRIC: statistics(v[TIE_BREAK_METRIC] for v in values)})
    best = choose(candidates)
    best_folders = [model_folder_name(trainer, plans, c, target) for c in best["configurations"]]
    information = {
        "version": INFORMATION_VERSION,
        "dataset": dataset_name,
        "target": target,
        "trainer": trainer,
        "plans": plans,
        "folds": folds,
        "selection": {
            "metric": f"mean {REGION} {SELECTION_METRIC} over the cross-validation cases",
            "tie_break": f"mean {REGION} {TIE_BREAK_METRIC} among candidates within {TIE_TOLERANCE} of the best "
                         f"{SELECTION_METRIC}, then fewer configurations",
            "tie_tolerance": TIE_TOLERANCE,
            "evaluation": {"mode": "region", "region": REGION, "normalisation": normalisation,
                           "data_range": data_range if data_range is not None else "region",
                           "predictions": f"fold_N/{VALIDATION_FOLDER}/ of each model folder",
                           "references": f"fold_N/{REFERENCE_FOLDER}/images/, brain masks "
                                         f"fold_N/{REFERENCE_FOLDER}/masks/",
                           "ensemble": "voxel-wise mean of the members' validation predictions"},
        },
        "num_cases": len(cases),
        "cases": cases,
        "candidates": candidates,
        "ensembles_not_scored": skipped,
        "best": {"name": best["name"], "configurations": best["configurations"], "model_folders": best_folders,
                 "folds": folds, "trainer": trainer, "plans": plans,
                 SELECTION_METRIC: best[SELECTION_METRIC]["mean"], TIE_BREAK_METRIC: best[TIE_BREAK_METRIC]["mean"]},
        "predict": predict_commands(dataset_name, target, best["configurations"], trainer, plans, folds),
    }
    output = Path(output_folder) if output_folder is not None else results
    json_path = inference_information_path(output, target)
    markdown_path = json_path.with_suffix(".md")
    remove_stale_temporaries([markdown_path, json_path])  # left by a killed earlier run
    write_text_atomic(markdown_path, format_markdown(information))  # the JSON last: it is what predict reads
    write_json_atomic(json_path, information)
    information["files"] = {"json": str(json_path.resolve()), "markdown": str(markdown_path.resolve())}
    return information


def predict_commands(dataset_name: str, target: str, configurations: Sequence[str], trainer: str, plans: str,
                     folds: Sequence[int]) -> dict:
    """``synth_predict -c best`` and the equivalent explicit commands."""
    fold_args = " ".join(map(str, folds))
    best = f"synth_predict -i INPUT -o OUTPUT -d {dataset_name} -c best --target {target}"
    outputs = {c: "OUTPUT" if len(configurations) == 1 else f"OUTPUT_{c}" for c in configurations}
    explicit = [f"synth_predict -i INPUT -o {outputs[c]} -d {dataset_name} -c {c} -tr {trainer} -p {plans} "
                f"-f {fold_args} --target {target}" for c in configurations]
    if len(configurations) > 1:
        explicit.append("synth_ensemble -i " + " ".join(f"OUTPUT_{c}" for c in configurations) + " -o OUTPUT")
    return {"command": best, "equivalent": explicit}


def format_markdown(information: dict) -> str:
    """The readable inference_information_{TARGET}.md."""
    best = information["best"]
    evaluation = information["selection"]["evaluation"]
    lines = [f"# Best configuration for {information['target']} ({information['dataset']})", "",
             f"Use **{best['name']}** (trainer {best['trainer']}, plans {best['plans']}, folds "
             f"{', '.join(map(str, best['folds']))}): model folder(s) {', '.join(best['model_folders'])}.", "",
             "```bash", information["predict"]["command"], "```", "",
             "which is the same as", "", "```bash", *information["predict"]["equivalent"], "```", "",
             f"Chosen by the {information['selection']['metric']} ({information['num_cases']} cases of folds "
             f"{', '.join(map(str, information['folds']))}); ties: {information['selection']['tie_break']}. "
             f"Scored like synth_evaluate's region mode: normalisation {evaluation['normalisation']}, data range "
             f"{evaluation['data_range']}, against {evaluation['references']}.", "",
             f"| candidate | brain {SELECTION_METRIC} | brain {TIE_BREAK_METRIC} | cases | |", "|---|---|---|---|---|"]
    for candidate in information["candidates"]:
        ssim, psnr = candidate[SELECTION_METRIC], candidate[TIE_BREAK_METRIC]
        mark = "chosen" if candidate["name"] == best["name"] else ""
        lines.append(f"| {candidate['name']} | {ssim['mean']:.4f} ± {ssim['std']:.4f} | {psnr['mean']:.2f} ± "
                     f"{psnr['std']:.2f} | {ssim['n']} | {mark} |")
    for name, reason in information["ensembles_not_scored"].items():
        lines.append(f"| {name} | not scored: {reason} | | | |")
    return "\n".join(lines) + "\n"


def format_table(information: dict) -> str:
    """A plain-text table of the candidates (printed by the command)."""
    width = max(len(c["name"]) for c in information["candidates"])
    lines = [f"{'candidate':<{width}}  {'brain SSIM':>10}  {'brain PSNR':>10}"]
    for candidate in information["candidates"]:
        mark = "  <- chosen" if candidate["name"] == information["best"]["name"] else ""
        lines.append(f"{candidate['name']:<{width}}  {candidate[SELECTION_METRIC]['mean']:>10.4f}  "
                     f"{candidate[TIE_BREAK_METRIC]['mean']:>10.2f}{mark}")
    for name, reason in information["ensembles_not_scored"].items():
        lines.append(f"{name}: not scored ({reason})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_find_best_configuration",
        description="Choose the configuration, or ensemble of configurations, to predict a target with: every "
                    "configuration and every ensemble (voxel-wise mean) is scored on the cross-validation "
                    "predictions of the folds (fold_N/validation/), by mean brain SSIM (region mode, as "
                    f"synth_evaluate), ties within {TIE_TOLERANCE} by mean brain PSNR. Writes "
                    "inference_information_{TARGET}.json and .md into the dataset's results folder; synth_predict "
                    "-c best follows it.")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 501")
    parser.add_argument("-t", "--target", required=True, help="target sequence, e.g. T1C")
    parser.add_argument("-c", "--configurations", nargs="+", default=None,
                        help="configurations to compare (default: every configuration trained for the target)")
    parser.add_argument("-f", "--folds", nargs="+", type=int, default=list(DEFAULT_FOLDS),
                        help="folds whose validation predictions are pooled; every configuration needs all of them "
                             "(default 0 1 2 3 4)")
    parser.add_argument("-tr", "--trainer", default=DEFAULT_TRAINER, help=f"trainer name (default {DEFAULT_TRAINER})")
    parser.add_argument("-p", "--plans", "--plans_name", dest="plans", default=DEFAULT_PLANS,
                        help=f"plans name (default {DEFAULT_PLANS})")
    parser.add_argument("--normalisation", "--normalization", choices=NORMALISATIONS, default=DEFAULT_NORMALISATION,
                        help="'percentile' (default, synth_evaluate's region mode): each volume rescaled by its own "
                             "brain 0.5-99.5 percentiles; 'none': the normalised scale as the fold validation scores "
                             "it (data range 1)")
    parser.add_argument("-np", "--num_processes", type=int, default=1, help="worker processes over cases (default 1)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for inference_information_{TARGET}.json/.md (default: the dataset's results "
                             "folder, where synth_predict -c best looks)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    refuse_nnunet_flags(parser, {
        "--disable_ensembling": "every ensemble of the -c configurations is scored with them; to compare single "
                                "configurations only, run it once per configuration (-c CONFIG)",
        "--no_overwrite": "inference_information_{TARGET}.json is always written again; choose another folder "
                          "with -o to keep the old one"})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_find_best_configuration``."""
    args = build_parser().parse_args(argv)

    def action() -> int:
        information = find_best_configuration(args.dataset, args.target, args.configurations, args.folds,
                                              args.trainer, args.plans, args.normalisation, args.num_processes,
                                              args.output, progress=not args.quiet)
        if not args.quiet:
            print(format_table(information))
            print(f"Best for {information['target']}: {information['best']['name']}. Wrote "
                  f"{information['files']['json']} and {information['files']['markdown']}\n"
                  f"Predict with: {information['predict']['command']}")
        return 0

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
