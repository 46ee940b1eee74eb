"""``synth_quickstart``: the main job end to end on the built-in example dataset.

make Dataset501 -> synth_plan_and_preprocess -> synth_train (U-Net and the two baselines, fold 0) ->
synth_predict on fold 0's validation cases presented BraSyn-style (target removed) -> synth_evaluate ->
synth_report, then a table of brain/tumour/healthy PSNR and SSIM per method. Every step is the ordinary
command a user runs (printed before it runs); finished steps are skipped, so an interrupted run resumes.
When the U-Net is also trained in the other configuration on the fold (the quickstart trains one), it runs
synth_find_best_configuration on the fold and predicts the U-Net's row with ``synth_predict -c best``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from synthunet import env, paths
from synthunet.plans import as_plans
from synthunet.utilities.files import link_or_copy

METHODS = ("SynthTrainer", "Baseline_VoxelRegression", "Baseline_Identity")
REGIONS = ("brain", "tumour", "healthy")
#: when the U-Net is trained in all of these (the quickstart trains one), synth_find_best_configuration chooses
BEST_OF = ("2.5d", "3d_fullres")


def _run(name: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
    print(f"\n$ {name} {' '.join(argv)}", flush=True)
    started = time.time()
    code = main(argv)
    if code:
        raise SystemExit(f"synth_quickstart: {name} failed with exit code {code}")
    print(f"  ({name} took {time.time() - started:.0f} s)", flush=True)


def _set_paths(work_dir: Path) -> None:
    for variable, sub in ((paths.RAW_ENV, "raw"), (paths.PREPROCESSED_ENV, "preprocessed"),
                          (paths.RESULTS_ENV, "results")):
        if not env.get(variable):
            os.environ[variable] = str((work_dir / sub).resolve())
        print(f"{variable}={env.get(variable)}")


def present_brasyn_style(raw: Path, cases: Sequence[str], channels: list[str], target: str, output: Path) -> Path:
    """Write ``output/{case}/{case}-{seq}.nii.gz`` for every channel except ``target`` (links where possible)."""
    description = json.loads((raw / "dataset.json").read_text())
    ending = description["file_ending"]
    if output.exists():
        shutil.rmtree(output)
    for case in cases:
        folder = output / case
        folder.mkdir(parents=True)
        for index, channel in enumerate(channels):
            if channel == target:
                continue
            source = raw / "imagesTr" / f"{case}_{index:04d}{ending}"
            destination = folder / f"{case}-{channel.lower()}{ending}"
            link_or_copy(source, destination)
    return output


def results_table(summaries: dict[str, dict], target: str) -> str:
    """Markdown table: one row per method, PSNR and SSIM per region (mean over cases)."""
    header = "| method | " + " | ".join(f"{r} PSNR | {r} SSIM" for r in REGIONS) + " |"
    lines = [header, "|---" * (1 + 2 * len(REGIONS)) + "|"]
    for method, summary in summaries.items():
        per_region = summary["per_target"][target]
        cells = []
        for region in REGIONS:
            metrics = per_region.get(region, {})
            for metric, digits in (("PSNR", 2), ("SSIM", 4)):
                value = metrics.get(metric, {}).get("mean")
                cells.append("n/a" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_configuration_step(dataset: str, results_dataset: Path, target: str, fold: int,
                            configurations: Sequence[str] = BEST_OF, trainer: str = METHODS[0]) -> str | None:
    """When the U-Net is trained and validated on ``fold`` in every configuration of ``configurations``, run
    ``synth_find_best_configuration`` on that fold and return the chosen candidate's name (else None: the
    quickstart itself trains only one configuration)."""
    from synthunet.inference.find_best_configuration import main as find_best_main
    from synthunet.inference.best_configuration import inference_information_path
    from synthunet.prediction.model_folder import DEFAULT_PLANS, model_folder_name

    folders = [results_dataset / model_folder_name(trainer, DEFAULT_PLANS, c, target) for c in configurations]
    if not all((f / f"fold_{fold}" / "validation" / "summary.json").is_file() for f in folders):
        return None
    _run("synth_find_best_configuration", find_best_main, ["-d", dataset, "-t", target, "-tr", trainer,
                                                           "-c", *configurations, "-f", str(fold), "--quiet"])
    information = json.loads(inference_information_path(results_dataset, target).read_text())
    print(f"  best for {target} on fold {fold}'s validation cases: {information['best']['name']}")
    return information["best"]["name"]


def quickstart(work_dir: Path, dataset_id: int = 501, target: str = "T1C", fold: int = 0, num_cases: int = 40,
               configuration: str = "3d_fullres", num_processes: int = 2, methods: Sequence[str] = METHODS) -> dict:
    """Run the main job; return ``{method: evaluation summary}``."""
    from synthunet.dataset.example.generate import main as make_example
    from synthunet.dataset.identifiers import DEFAULT_PLANS, resolve_dataset_name
    from synthunet.evaluation.cli import evaluate_main
    from synthunet.evaluation.report import main as report_main
    from synthunet.inference.cli import main as predict_main
    from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main
    from synthunet.prediction.model_folder import model_folder_name
    from synthunet.training.cli import main as train_main

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    _set_paths(work_dir)
    d = str(dataset_id)
    existing = list(paths.raw_folder().glob(f"Dataset{dataset_id:03d}_*")) if paths.raw_folder().is_dir() else []
    if not existing:
        _run("synth_make_example_dataset", make_example, ["-d", d, "--num_cases", str(num_cases),
                                                         "-np", str(num_processes)])
    _run("synth_plan_and_preprocess", plan_and_preprocess_main, ["-d", d, "-np", str(num_processes)])
    name = resolve_dataset_name(dataset_id)
    raw = paths.raw_folder() / name
    plans_file = paths.preprocessed_folder() / name / f"{DEFAULT_PLANS}.json"
    channels = as_plans(json.loads(plans_file.read_text()), str(plans_file)).channels
    for method in methods:
        model = paths.results_folder() / name / model_folder_name(method, DEFAULT_PLANS, configuration, target)
        if (model / f"fold_{fold}" / "checkpoint_final.pth").is_file():
            print(f"\n{method}: fold {fold} already trained ({model})")
            continue
        _run("synth_train", train_main, [d, configuration, target, str(fold), "-tr", method, "--c"])
    # only when the user has trained both configurations (e.g. synth_train 501 2.5d T1C 0): predict with the better
    best = best_configuration_step(d, paths.results_folder() / name, target, fold)
    splits = json.loads((paths.preprocessed_folder() / name / "splits_final.json").read_text())
    validation_cases = sorted(splits[fold]["val"])
    brasyn_input = present_brasyn_style(raw, validation_cases, channels, target, work_dir / f"brasyn_fold{fold}_input")
    print(f"\nfold {fold}'s {len(validation_cases)} validation cases presented BraSyn-style, without {target}: "
          f"{brasyn_input}")
    summaries: dict[str, dict] = {}
    prediction_folders: dict[str, Path] = {}
    for method in methods:
        chosen = best is not None and method == METHODS[0]
        folder_name = f"{method}__best_" + re.sub(r"[^A-Za-z0-9.]+", "_", best).strip("_") if chosen else method
        predictions = prediction_folders[method] = work_dir / "predictions" / folder_name
        _run("synth_predict", predict_main, ["-i", str(brasyn_input), "-o", str(predictions), "-d", d,
                                             "-c", "best" if chosen else configuration, "-tr", method, "-f", str(fold),
                                             "--target", target if chosen else "auto", "--continue_prediction"])
        evaluation = work_dir / "evaluation" / folder_name
        common = ["-ref", str(raw / "imagesTr"), "-d", d, "--cases", *validation_cases, "--targets", target]
        if (raw / "labelsTr").is_dir():
            common += ["-l", str(raw / "labelsTr")]
        if (raw / "masksTr").is_dir():
            common += ["-m", str(raw / "masksTr")]
        _run("synth_evaluate", evaluate_main, [*common, "-pred", str(predictions), "-o", str(evaluation), "--quiet"])
        label = f"{method} (best: {best})" if chosen else method
        summaries[label] = json.loads((evaluation / "summary.json").read_text())
    report = work_dir / "report"
    first = prediction_folders[methods[0]]
    report_args = ["-i", str(first), "-ref", str(raw / "imagesTr"), "-d", d,
                   "--inputs", str(raw / "imagesTr"), "-o", str(report), "--cases", *validation_cases,
                   "--targets", target, "--per_case_csv", str(work_dir / "evaluation" / first.name / "per_case.csv"),
                   "--quiet"]
    for flag, sub in (("-l", "labelsTr"), ("-m", "masksTr")):
        if (raw / sub).is_dir():
            report_args += [flag, str(raw / sub)]
    _run("synth_report", report_main, report_args)
    table = results_table(summaries, target)
    (work_dir / "results_table.md").write_text(table + "\n")
    print(f"\n{target} synthesis on fold {fold}'s validation cases ({len(validation_cases)} cases, region mode):\n")
    print(table)
    print(f"\nreport: {report / 'index.html'}\ntable: {work_dir / 'results_table.md'}")
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="synth_quickstart",
        description="Run the main job end to end on the built-in example dataset: make Dataset501, plan and "
                    "preprocess, train fold 0 for one target with the planner's CPU schedule (plus the two "
                    "baselines), predict fold 0's validation cases presented BraSyn-style, evaluate, write the "
                    "visual report and print a table. Steps already done are skipped.")
    parser.add_argument("--work_dir", type=Path, required=True,
                        help="folder for everything; $synthUNet_raw/_preprocessed/_results default to its raw/, "
                             "preprocessed/ and results/ sub-folders when unset")
    parser.add_argument("-d", "--dataset_id", type=int, default=501, help="dataset id (default 501)")
    parser.add_argument("--target", default="T1C", help="sequence to synthesise (default T1C)")
    parser.add_argument("--fold", type=int, default=0, help="fold to train and validate (default 0)")
    parser.add_argument("--num_cases", type=int, default=40, help="cases of the example dataset (default 40)")
    parser.add_argument("-c", "--configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    from synthunet.cli_support import run_cli
    return run_cli(lambda: quickstart(args.work_dir, args.dataset_id, args.target, args.fold, args.num_cases,
                                      args.configuration, args.num_processes) and 0)


if __name__ == "__main__":
    sys.exit(main())
