"""Downstream segmentation benchmark: does a tumour segmenter still work on synthetic sequences?

1. Trains synthUNet's own segmenter (``synth_train DATASET 3d_fullres seg FOLD -tr SegmentationTrainer``) on
   the fold with a CPU budget: ``--epochs`` comes from ``--minutes`` and the plans' estimated step time,
   exactly as ``benchmarks/quality.py`` does it (``epochs_for_budget``, the planner's time model). A fold
   whose ``checkpoint_final.pth`` holds those epochs is reused (``--retrain`` forces).
2. For each ``--synthetic [LABEL:]TARGET=DIR`` (predictions of the fold's validation cases, raw, bare or BraSyn
   names, e.g. from synth_quickstart or benchmarks/quality.py; a label tells two sets of one target apart,
   e.g. ``unet:T2F=DIR cubic:T2F=DIR``), runs ``synth_evaluate --segmenter "... segment_cli
   -i {input} -o {output} -d DATASET -f FOLD"`` on the fold's validation cases: the real images, the images
   with TARGET replaced by the prediction, and with TARGET replaced by zeros.
3. Writes a markdown table (``--output``; a JSON of the numbers beside it): rows real, synthetic-T1C, ...
   (synthetic-T2F (unet), ... with labels), zero-filled-T1C, ..., columns Dice WT / TC / ET (mean ± population
   std over the cases).

    python benchmarks/downstream_segmentation.py -d 501 --minutes 10 \\
        --synthetic T1C=synthunet_work/predictions/SynthTrainer T2F=.../SynthTrainer/T2F/fold_0 \\
        -o documentation/benchmarks_segmentation.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
import quality  # noqa: E402  (benchmarks/ is not a package; its helpers are shared)

DEFAULT_OUTPUT = BENCHMARKS.parent / "documentation" / "benchmarks_segmentation.md"
TRAINER = "SegmentationTrainer"
REGIONS = ("WT", "TC", "ET")
#: a --synthetic label names a row and an evaluation folder
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


BenchmarkError = quality.BenchmarkError


@dataclass(frozen=True)
class SyntheticSet:
    """One ``--synthetic [LABEL:]TARGET=FOLDER``: predictions of TARGET, shown as ``synthetic-TARGET (LABEL)``."""

    target: str
    folder: Path
    label: str | None = None

    @property
    def name(self) -> str:
        return f"{self.target} ({self.label})" if self.label else self.target


def parse_synthetic(items: Sequence[str], channels: Sequence[str]) -> list[SyntheticSet]:
    """``["T1C=DIR", "cubic:T2F=DIR", ...]`` -> sets with the dataset's channel spelling; folders must exist.

    A target may be given more than once (e.g. two super-resolution methods for T2F) when each has a label."""
    result: list[SyntheticSet] = []
    for item in items:
        left, separator, folder = item.partition("=")
        label, _, target = left.rpartition(":")
        if not separator or not target or not folder or (":" in left and not LABEL.fullmatch(label)):
            raise BenchmarkError(f"--synthetic takes [LABEL:]TARGET=FOLDER (LABEL: letters, digits, _ . -), "
                                 f"got {item!r}")
        entry = SyntheticSet(quality.match_names([target], channels, "Target")[0], Path(folder), label or None)
        if any(e.name == entry.name for e in result):
            raise BenchmarkError(f"--synthetic names {entry.name} twice: give each set of {entry.target} "
                                 f"predictions its own label (LABEL:{entry.target}=FOLDER)")
        if not entry.folder.is_dir():
            raise BenchmarkError(f"--synthetic {item}: {folder} is not a folder")
        result.append(entry)
    if not result:
        raise BenchmarkError("give at least one --synthetic TARGET=FOLDER")
    return result


def segmenter_command(dataset: str, configuration: str, plans: str, fold: int, tta: bool, processes: int,
                      device: str | None) -> str:
    """The synth_segment template for synth_evaluate --segmenter (run with this Python: no console script needed)."""
    parts = [sys.executable, "-m", "synthunet.inference.segment_cli", "-i", "{input}", "-o", "{output}", "-d",
             dataset, "-c", configuration, "-tr", TRAINER, "-p", plans, "-f", str(fold), "-npp", str(processes),
             "-nps", str(processes), "--quiet"]
    if not tta:
        parts.append("--disable_tta")
    if device:
        parts += ["--device", device]
    return " ".join(p if p in ("{input}", "{output}") else shlex.quote(p) for p in parts)


def cell(stats: dict | None) -> str:
    if not stats or not stats.get("n"):
        return "n/a"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def table(rows: list[dict]) -> str:
    lines = ["| input set | n cases | " + " | ".join(f"{r} Dice" for r in REGIONS) + " |",
             "|" + "---|" * (2 + len(REGIONS))]
    for row in rows:
        lines.append(f"| {row['input_set']} | {row['n']} | " + " | ".join(cell(row["dice"].get(r)) for r in REGIONS)
                     + " |")
    return "\n".join(lines)


def markdown(content: dict) -> str:
    h = content["header"]
    return "\n".join([
        "# Downstream segmentation benchmark", "",
        f"- dataset: {h['dataset']} (plans {h['plans']}, {h['configuration']}); fold {h['fold']}: "
        f"{h['n_cases']} validation cases",
        f"- date: {h['date']} ({h['wall_minutes']:.1f} min in all)",
        f"- machine: {quality.machine_line(h['machine'])}",
        f"- segmenter: `synth_train {h['dataset']} {h['configuration']} seg {h['fold']} -tr {TRAINER} --epochs "
        f"{h['epochs']['epochs']}` ({h['epochs']['source']}; training took "
        + ("n/a: an existing checkpoint was reused" if h["train_minutes"] is None
           else f"{h['train_minutes']:.1f} min")
        + f"), prediction {'with' if h['tta'] else 'without'} mirroring",
        "- synthetic inputs: " + ", ".join(f"{t} from `{f}`" for t, f in h["synthetic"].items()),
        "- rows: real = every reference sequence; synthetic-X = X replaced by its prediction; zero-filled-X = X "
        "replaced by zeros (the segmenter without X). Dice per BraTS region (WT labels 1-3, TC 1 and 3, ET 3), "
        "mean ± population std over the cases; a region empty in both maps scores 1",
        f"- command: `{h['command']}`", "",
        table(content["rows"]), ""])


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    from synthunet import paths
    from synthunet.training import Experiment
    from synthunet.training.cli import main as train_main

    clock = quality.Clock()
    started = datetime.datetime.now().astimezone()
    machine = quality.machine_info()
    name, plans = quality.ensure_preprocessed(args.dataset, args.plans, [args.configuration], args.num_processes,
                                              shlex.split(args.plan_args or ""), clock)
    raw = paths.raw_folder() / name
    synthetic = parse_synthetic(args.synthetic, quality.channel_list(plans))
    if args.configuration not in plans.configurations:
        raise BenchmarkError(f"configuration {args.configuration} is not planned; plans have "
                             f"{', '.join(plans.configurations)}")
    minutes = args.minutes or float(plans.planned_for.get("cpu_training_minutes") or 10.0)
    epochs = quality.epochs_for(plans.configuration(args.configuration), minutes, args.epochs, args.step_time_s,
                                f"the plans' {args.configuration} block has no CPU step-time estimate: pass --epochs "
                                f"N or --step_time_s SECONDS")
    experiment = Experiment.resolve(name, args.configuration, "seg", args.fold, TRAINER, args.plans)
    cases = sorted(experiment.fold_cases()[1])
    final = experiment.output_folder / "checkpoint_final.pth"
    train_minutes = None
    if final.is_file() and not args.retrain and quality.checkpoint_epochs(final) == epochs["epochs"]:
        clock.say(f"reusing {experiment.model_folder.name}/fold_{args.fold} ({epochs['epochs']} epochs)")
    else:
        argv_train = [name, args.configuration, "seg", str(args.fold), "-tr", TRAINER, "-p", args.plans,
                      "--epochs", str(epochs["epochs"]), "--skip_final_validation"]
        if args.device:
            argv_train += ["--device", args.device]
        train_minutes = quality.call("synth_train", train_main, argv_train, clock) / 60.0
    command = segmenter_command(name, args.configuration, args.plans, args.fold, args.tta, args.predict_processes,
                                args.device)
    work = Path(args.work_dir) if args.work_dir else paths.results_folder() / "benchmark_segmentation" / name
    per_set: dict[str, dict] = {}
    zero_filled_done: set[str] = set()
    for number, entry in enumerate(synthetic):
        output = work / "evaluation" / (f"{entry.target}_{entry.label}" if entry.label else entry.target)
        sets_wanted = [*(["real"] if number == 0 else []), "synthetic",
                       *(["missing"] if entry.target not in zero_filled_done else [])]
        zero_filled_done.add(entry.target)
        quality.evaluate(raw, entry.folder, name, cases, entry.target, output, clock, "--target", entry.target,
                         "--segmenter", command, "--segmenter_sets", *sets_wanted)
        sets = json.loads((output / "summary.json").read_text())["downstream_segmentation"]["per_target"][entry.target]
        for input_set, label in (("real", "real"), ("synthetic", f"synthetic-{entry.name}"),
                                 ("missing", f"zero-filled-{entry.target}")):
            if input_set in sets:
                per_set[label] = sets[input_set]
    targets = list(dict.fromkeys(e.target for e in synthetic))
    order = ["real", *(f"synthetic-{e.name}" for e in synthetic), *(f"zero-filled-{t}" for t in targets)]
    rows = [{"input_set": label, "n": max(per_set[label][r]["n"] for r in REGIONS), "dice": per_set[label]}
            for label in order if label in per_set]
    header = {"dataset": name, "plans": args.plans, "configuration": args.configuration, "fold": args.fold,
              "n_cases": len(cases), "cases": cases, "date": started.strftime("%Y-%m-%d %H:%M %Z"),
              "wall_minutes": (time.time() - clock.started) / 60.0, "machine": machine,
              "budget_minutes": minutes, "epochs": epochs, "train_minutes": train_minutes, "tta": args.tta,
              "synthetic": {e.name: str(e.folder) for e in synthetic}, "segmenter_command": command,
              "command": "python benchmarks/downstream_segmentation.py " + " ".join(shlex.quote(a) for a in argv)}
    content = {"header": header, "rows": rows}
    quality.write_report(args.output, markdown(content), content, clock)
    print("\n" + table(rows))
    return content


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name in $synthUNet_raw (e.g. 501)")
    parser.add_argument("--synthetic", nargs="+", required=True, metavar="[LABEL:]TARGET=FOLDER",
                        help="predictions of the fold's validation cases per target, e.g. T1C=DIR T2F=DIR "
                             "(raw {case}_{XXXX}, bare {case} or BraSyn {case}-t1c names); the same target twice "
                             "needs a label each, e.g. unet:T2F=DIR cubic:T2F=DIR (rows synthetic-T2F (unet), ...)")
    parser.add_argument("-f", "--fold", type=int, default=0, help="fold (default 0): segmenter training and cases")
    parser.add_argument("--minutes", type=float, default=None,
                        help="segmenter training budget in minutes (default: the plans' cpu_training_minutes)")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of the budget (GPU plans)")
    parser.add_argument("--step_time_s", type=float, default=None,
                        help="step time to turn --minutes into epochs, instead of the plans' estimate")
    parser.add_argument("-c", "--configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    parser.add_argument("-p", "--plans", default="synthUNetPlans", help="plans name (default synthUNetPlans)")
    parser.add_argument("--tta", action="store_true", help="mirroring at prediction (8x slower; default off)")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps for training and prediction")
    parser.add_argument("--predict_processes", type=int, default=0,
                        help="synth_segment -npp/-nps (default 0: in its own process)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown table (a .json of the numbers is written beside it)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="evaluations (default $synthUNet_results/benchmark_segmentation/DatasetXXX_Name)")
    parser.add_argument("--retrain", action="store_true", help="train the segmenter again even if it is done")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="processes for plan_and_preprocess")
    parser.add_argument("--plan_args", default="",
                        help="extra synth_plan_and_preprocess options if the dataset must be planned")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return quality.cli_main(argv, build_parser, lambda args, argv: 0 if run(args, argv) else 1)


if __name__ == "__main__":
    sys.exit(main())
