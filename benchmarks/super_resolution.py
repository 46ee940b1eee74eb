"""Super-resolution benchmark: U-Net (L1) vs. RRDB + SRGAN (no VGG) vs. the cubic-interpolation baseline.

    python benchmarks/super_resolution.py -d 501 --minutes 10 -o documentation/benchmarks_super_resolution.md

1. The super-resolution dataset (``--sr_id``, default 502): made with ``synth_make_sr_dataset`` (``--sequence``
   T2F, ``--factor`` 4, ``--axis`` z, ``--mode`` thick) unless it exists; an existing one must have been made
   from the same source with the same degradation (its dataset.json says how), else the run stops.
2. One row per ``--rows`` model (default ``unet rrdb``), each a ``benchmarks/quality.py`` run on fold ``--fold``
   (default 0), 3d_fullres, target = the sequence, input = ``{SEQUENCE}_LR``: (a) ``unet``: ``SynthTrainer`` on the
   default plans (U-Net, L1), (b) ``rrdb``: ``SynthTrainer_SRGANNoVGG`` on ``synthUNetPlans_rrdb`` (L1 alone, then
   L1 + 0.1 adversarial with Real-ESRGAN's U-Net discriminator for the last 30 % of the epochs, the EMA of the
   weights saved; planned with ``--architecture rrdb --gan realesrgan``, so the discriminator is in the time model
   for those steps), (c) ``rrdb_l1``: ``SynthTrainer`` on
   ``synthUNetPlans_rrdbL1`` (planned with ``--architecture rrdb``: the RRDB on L1 alone, ESRGAN's PSNR-oriented
   first stage). quality.py plans/preprocesses when needed, turns the same ``--minutes`` into epochs with each
   plans' estimated step time (``epochs_for_budget``: the planner's CPU time model), trains with ``synth_train``,
   predicts the held-out cases with ``synth_predict`` and scores them with ``synth_evaluate`` (region mode); it
   reports the measured training minutes and prediction seconds per case.
3. The cubic baseline: the held-out cases' ``{SEQUENCE}_LR`` files (the degraded input, already interpolated onto
   the original grid with cubic B-splines) scored as predictions of ``{SEQUENCE}`` with the same ``synth_evaluate``
   call.

4. With ``--segmenter_minutes M``, seed 004's downstream check: ``downstream_segmentation.py`` on the source
   dataset's fold (its segmenter trained for M minutes), Dice WT/TC/ET with every sequence real, with the sequence
   replaced by each row's output (the files linked under bare case names, since the source's channel indices
   differ) and with it zero-filled.

One markdown table (PSNR/SSIM in brain, tumour and healthy tissue, training minutes, seconds per case; with step 4 a
second one of Dice) goes to ``-o`` with a JSON of the numbers beside it. Resumable like quality.py (its work
folders are under ``--work_dir``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (benchmarks/ is not a package; its helpers are shared)
from synthunet.utilities.files import link_or_copy  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "documentation" / "benchmarks_super_resolution.md"
#: (row name, quality.py trainer, plans name, extra synth_plan_and_preprocess options)
ROWS = (("unet", "SynthTrainer", "synthUNetPlans", ""),
        ("rrdb", "SynthTrainer_SRGANNoVGG", "synthUNetPlans_rrdb", "--architecture rrdb --gan realesrgan"),
        ("rrdb_l1", "SynthTrainer", "synthUNetPlans_rrdbL1", "--architecture rrdb"))
#: rows run when --rows is not given
DEFAULT_ROWS = ("unet", "rrdb")
DEGRADATION_KEYS = ("source", "sequence", "factor", "axis", "mode", "noise", "seed")


class BenchmarkError(quality.BenchmarkError):
    """A problem the user can fix (printed as ``error: ...`` by ``run_cli``)."""


def ensure_sr_dataset(args: argparse.Namespace, clock: quality.Clock) -> str:
    """The super-resolution dataset's name; made with synth_make_sr_dataset when ``--sr_id`` does not exist."""
    from synthunet import paths
    from synthunet.dataset.identifiers import resolve_dataset_name
    from synthunet.dataset.make_sr_dataset import main as make_main

    source = resolve_dataset_name(args.dataset)
    existing = sorted(paths.raw_folder().glob(f"Dataset{args.sr_id:03d}_*"))
    wanted = {"source": source, "sequence": args.sequence, "factor": args.factor, "axis": args.axis,
              "mode": args.mode, "noise": args.noise, "seed": args.seed}
    if not existing:
        argv = ["-d", source, "--sequence", args.sequence, "-o", str(args.sr_id), "--factor", str(args.factor),
                "--axis", args.axis, "--mode", args.mode, "--noise", str(args.noise), "--seed", str(args.seed),
                "-np", str(args.num_processes), "--no_progress"]
        quality.call("synth_make_sr_dataset", make_main, argv, clock)
        existing = sorted(paths.raw_folder().glob(f"Dataset{args.sr_id:03d}_*"))
    folder = existing[0]
    made = json.loads((folder / "dataset.json").read_text()).get("super_resolution") or {}
    made = {key: made.get(key) for key in DEGRADATION_KEYS}
    if {**made, "sequence": str(made["sequence"]).lower()} != {**wanted, "sequence": args.sequence.lower()}:
        raise BenchmarkError(f"{folder} exists but was not made with this degradation (it says {made}, the "
                             f"benchmark asks for {wanted}); pass another --sr_id or remove it")
    clock.say(f"super-resolution dataset {folder.name}: {made}")
    return folder.name


def quality_row(name: str, trainer: str, plans: str, plan_options: str, sr_name: str, sequence: str,
                args: argparse.Namespace, clock: quality.Clock) -> dict:
    """One quality.py run (one trainer, one plans file, one fold, 3d_fullres); its content dict."""
    argv = ["-d", sr_name, "--targets", sequence, "--folds", str(args.fold), "--trainers", trainer, "--baselines",
            "--configurations", "3d_fullres", "-p", plans, "-o", str(args.work / name / "quality.md"),
            "--work_dir", str(args.work / name), "--seed", str(args.seed), "-np", str(args.num_processes),
            "--plan_args", " ".join(filter(None, [plan_options, args.plan_args]))]
    for flag, value in (("--minutes", args.minutes), ("--epochs", args.epochs), ("--step_time_s", args.step_time_s),
                        ("--device", args.device)):
        if value is not None:
            argv += [flag, str(value)]
    if args.retrain:
        argv.append("--retrain")
    if args.repredict:
        argv.append("--repredict")
    clock.say(f"row {name}: python benchmarks/quality.py {' '.join(shlex.quote(a) for a in argv)}")
    benchmark = quality.Benchmark(quality.build_parser().parse_args(argv))
    benchmark.argv = argv
    content = benchmark.run()
    [row] = content["rows"]
    predictions = args.work / name / "predictions" / quality.row_tag(row) / sequence / f"fold_{args.fold}"
    row["configuration"] = f"3d_fullres ({name})"
    return {"row": row, "failures": content["failures"], "header": content["header"], "predictions": predictions}


def held_out_cases(sr_name: str, sequence: str, fold: int, plans: str) -> list[str]:
    """The fold's validation cases, from the splits of ``plans`` (plans that exist: those of a row that ran)."""
    from synthunet.training import Experiment

    return sorted(Experiment.resolve(sr_name, "3d_fullres", sequence, fold, plans_name=plans).fold_cases()[1])


def cubic_row(sr_name: str, sequence: str, fold: int, cases: list[str], ending: str, work: Path,
              clock: quality.Clock) -> dict:
    """The ``{SEQUENCE}_LR`` input files of the held-out ``cases``, scored as predictions of ``SEQUENCE``."""
    from synthunet import paths

    raw = paths.raw_folder() / sr_name
    predictions, evaluation = work / "cubic" / "predictions", work / "cubic" / "evaluation"
    if predictions.exists():
        shutil.rmtree(predictions)
    predictions.mkdir(parents=True)
    for case in cases:  # channel 0 is the degraded input; named {case}{ending} = the --target channel
        source, destination = raw / "imagesTr" / f"{case}_0000{ending}", predictions / f"{case}{ending}"
        link_or_copy(source, destination)
    quality.evaluate(raw, predictions, sr_name, cases, sequence, evaluation, clock, "--target", sequence)
    per_case = [{**r, "fold": fold} for r in quality.read_per_case(evaluation / "per_case.csv", sequence)]
    row = {"method": "cubic B-spline (the input)", "configuration": "—", "orientations": None, "baseline": True}
    collected = {"train": [], "predict": [], "per_case": per_case, "failed": []}
    return {"row": quality.summarise(row, sequence, collected, [fold]), "predictions": predictions}


def link_bare_names(source: Path, cases: Sequence[str], ending: str, destination: Path) -> Path:
    """``destination/{case}{ending}`` for each case, hard links to the case's one prediction in ``source``
    (``{case}{ending}`` or ``{case}_XXXX{ending}``): bare names are read as the target channel in the source
    dataset, whose channel indices are not the super-resolution dataset's."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    files = sorted(source.iterdir())
    for case in cases:
        name = re.compile(rf"{re.escape(case)}(_\d{{4}})?{re.escape(ending)}")
        found = [f for f in files if name.fullmatch(f.name)]
        if len(found) != 1:
            raise BenchmarkError(f"{source} has {len(found)} prediction files for case {case} (expected one)")
        link_or_copy(found[0], destination / f"{case}{ending}")
    return destination


def downstream_segmentation(args: argparse.Namespace, predictions: dict[str, Path], sr_name: str, sequence: str,
                            cases: list[str], ending: str, clock: quality.Clock) -> dict:
    """benchmarks/downstream_segmentation.py on the source dataset's fold: its segmenter (``--segmenter_minutes``)
    on the real images and with ``sequence`` replaced by each row's output (``synthetic-T2F (unet)``, ...,
    ``synthetic-T2F (cubic)``); its content dict."""
    import downstream_segmentation as downstream

    work = args.work / "segmentation"
    synthetic = [f"{label}:{sequence}={link_bare_names(folder, cases, ending, work / 'inputs' / label)}"
                 for label, folder in predictions.items()]
    argv = ["-d", args.dataset, "--synthetic", *synthetic, "-f", str(args.fold), "--minutes",
            str(args.segmenter_minutes), "-o", str(work / "segmentation.md"), "--work_dir", str(work), "-np",
            str(args.num_processes), "--plan_args", args.plan_args]
    if args.device:
        argv += ["--device", args.device]
    clock.say(f"downstream segmentation: python benchmarks/downstream_segmentation.py "
              f"{' '.join(shlex.quote(a) for a in argv)}")
    content = downstream.run(downstream.build_parser().parse_args(argv), argv)
    if sorted(content["header"]["cases"]) != cases:
        raise BenchmarkError(f"fold {args.fold} of {args.dataset} holds other validation cases than fold {args.fold} "
                             f"of {sr_name}: the Dice rows would not describe the same cases")
    return content


def markdown(content: dict) -> str:
    h = content["header"]
    d = h["degradation"]
    lines = ["# Super-resolution benchmark", "",
             f"- source: {d['source']}; super-resolution dataset: {h['dataset']} ({d['sequence']}_LR -> "
             f"{d['sequence']}: {d['mode']}, factor {d['factor']} along voxel axis {d['axis']}, noise "
             f"{d['noise']} x brain p99, seed {d['seed']}); fold {h['fold']}",
             f"- date: {h['date']} (finished {h['finished']}, {h['wall_minutes']:.1f} min in all)",
             f"- machine: {quality.machine_line(h['machine'])}",
             f"- budget: {h['budget']}",
             "- prediction: synth_predict -f FOLD --disable_tta; evaluation: synth_evaluate, region mode, percentile "
             "normalisation (default); mean ± std over the fold's held-out cases",
             f"- command: `{h['command']}`", "",
             quality.table(content["rows"]), "",
             "Rows: `SynthTrainer` on the default plans (U-Net, L1); `SynthTrainer_SRGANNoVGG` on "
             "`synthUNetPlans_rrdb` (RRDB generator, L1 alone for 70 % of the epochs, then L1 + 0.1 adversarial "
             "with Real-ESRGAN's U-Net discriminator; the EMA of its weights, decay 0.999, is the model); "
             "`SynthTrainer` on "
             "`synthUNetPlans_rrdbL1` (RRDB generator, L1 alone; planned without a discriminator); the cubic "
             "B-spline baseline is the "
             f"`{d['sequence']}_LR` input channel itself (the degraded volume interpolated onto the original grid "
             "by synth_make_sr_dataset), so it has no training time and its seconds per case are n/a. Train "
             "min/fold is the measured wall clock of synth_train; infer s/case the wall clock of synth_predict "
             "divided by the cases."]
    if content.get("segmentation"):
        import downstream_segmentation as downstream

        seg = content["segmentation"]["header"]
        lines += ["", "## Downstream tumour segmentation", "",
                  f"synthUNet's segmenter trained on {seg['dataset']} fold {seg['fold']} ({seg['epochs']['epochs']} "
                  f"epochs: {seg['epochs']['source']}), applied to the same {seg['n_cases']} held-out cases with "
                  f"every sequence real, with {d['sequence']} replaced by each row's output, and with "
                  f"{d['sequence']} replaced by zeros (benchmarks/downstream_segmentation.py).", "",
                  downstream.table(content["segmentation"]["rows"])]
    if content.get("failures"):
        lines += ["", "**Failed steps:**", ""] + [f"- {failure}" for failure in content["failures"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from synthunet import paths

    clock = quality.Clock()
    started = datetime.datetime.now().astimezone()
    machine = quality.machine_info()
    sr_name = ensure_sr_dataset(args, clock)
    dataset = json.loads((paths.raw_folder() / sr_name / "dataset.json").read_text())
    sequence, ending = dataset["channel_names"]["1"], dataset["file_ending"]
    default_work = paths.results_folder() / "benchmark_super_resolution" / sr_name
    args.work = Path(args.work_dir) if args.work_dir else default_work
    rows, failures, budgets, predictions = [], [], [], {}
    chosen = [row for row in ROWS if row[0] in args.rows]
    for name, trainer, plans, plan_options in chosen:
        result = quality_row(name, trainer, plans, plan_options, sr_name, sequence, args, clock)
        rows.append(result["row"])
        predictions[name] = result["predictions"]
        failures += result["failures"]
        epochs = result["header"]["epochs"]["3d_fullres"]
        budgets.append(f"{name}: {result['header']['budget_minutes_per_fold']:g} min -> {epochs['epochs']} epoch(s) "
                       f"x {epochs['iterations_per_epoch']} iterations ({epochs['source']})")
    cases = held_out_cases(sr_name, sequence, args.fold, chosen[0][2])  # the first row's plans exist now
    cubic = cubic_row(sr_name, sequence, args.fold, cases, ending, args.work, clock)
    rows.append(cubic["row"])
    predictions["cubic"] = cubic["predictions"]
    segmentation = None
    if args.segmenter_minutes and failures:
        clock.say("downstream segmentation skipped: a row failed (see Failed steps)")
    elif args.segmenter_minutes:
        segmentation = downstream_segmentation(args, predictions, sr_name, sequence, cases, ending, clock)
    finished = datetime.datetime.now().astimezone()
    made = dataset["super_resolution"]
    header = {"dataset": sr_name, "fold": args.fold, "degradation": {k: made.get(k) for k in DEGRADATION_KEYS},
              "date": started.strftime("%Y-%m-%d %H:%M %Z"), "finished": finished.strftime("%Y-%m-%d %H:%M %Z"),
              "wall_minutes": (time.time() - clock.started) / 60.0, "machine": machine, "budget": "; ".join(budgets),
              "command": "python benchmarks/super_resolution.py " + " ".join(shlex.quote(a) for a in argv)}
    content = {"header": header, "rows": rows, "failures": failures, "segmentation": segmentation}
    quality.write_report(args.output, markdown(content), content, clock)
    print("\n" + quality.table(rows))
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", default="501", help="source raw dataset id or name (default 501)")
    parser.add_argument("--sr_id", type=int, default=502, help="id of the super-resolution dataset (default 502)")
    parser.add_argument("--sequence", default="T2F", help="sequence to super-resolve (default T2F)")
    parser.add_argument("--factor", type=int, default=4, help="degradation factor (default 4)")
    parser.add_argument("--axis", default="z", choices=("x", "y", "z"), help="degraded voxel axis (default z)")
    parser.add_argument("--mode", default="thick", choices=("thick", "kspace"), help="degradation (default thick)")
    parser.add_argument("--noise", type=float, default=0.01, help="noise, fraction of the brain p99 (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="degradation and training seed (default 0)")
    parser.add_argument("--fold", type=int, default=0, help="fold (default 0)")
    parser.add_argument("--rows", nargs="+", choices=[row[0] for row in ROWS], default=list(DEFAULT_ROWS),
                        help="models to train (default: unet rrdb); rrdb_l1 is the RRDB on L1 alone (ESRGAN's "
                             "PSNR-oriented stage), planned without the discriminator; the cubic row is always scored")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget per model in minutes (default: the plans' cpu_training_minutes)")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of the budget (GPU plans)")
    parser.add_argument("--step_time_s", type=float, default=None,
                        help="step time to turn --minutes into epochs instead of each plans' estimate")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: synth_train's)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown table (a .json of the numbers is written beside it)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="work folders (default $synthUNet_results/benchmark_super_resolution/DatasetXXX_Name)")
    parser.add_argument("-np", "--num_processes", type=int, default=2,
                        help="processes for synth_make_sr_dataset and synth_plan_and_preprocess (default 2)")
    parser.add_argument("--plan_args", default="",
                        help="extra synth_plan_and_preprocess options for both plans, e.g. \"--cpu_gflops 90 36\"")
    parser.add_argument("--segmenter_minutes", type=float, default=None,
                        help="also train the source dataset's tumour segmenter for this many minutes and report "
                             "its Dice with the sequence replaced by each row's output (default: skip)")
    parser.add_argument("--retrain", action="store_true", help="train again even if a fold is done")
    parser.add_argument("--repredict", action="store_true", help="predict and evaluate again even if done")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return quality.cli_main(argv, build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
