"""Synthesis quality benchmark: every recipe on the same folds with the same CPU time budget per fold.

For each target sequence (default: every channel of the dataset) and each fold (default 0-4) it trains
the closed-form baselines (3d_fullres only) and every trainer x configuration with ``synth_train``, presents
the fold's held-out cases without the target (BraSyn-style case folders when the channels are the BraTS
sequences, else raw layout), predicts them with ``synth_predict -f FOLD --disable_tta`` (2.5d once per
``--orientations`` value; the model is trained once), scores them with ``synth_evaluate`` (region mode,
default normalisation, ``-l labelsTr -m masksTr`` when present), and writes one markdown table (mean +- std
over all held-out cases of all folds) plus a JSON of the raw numbers beside it. When the raw dataset has an
``oracleTr`` folder (the example dataset's noise-free, bias-free signals), an "oracle" row scores the held-out
cases' oracle signal of the target with the same ``synth_evaluate`` call: the physical limit (no training).

    python benchmarks/quality.py -d 501 --targets T1C T2F --folds 0 1 --minutes 3 \\
        --trainers SynthTrainer SynthTrainer_L1SSIM SynthTrainer_L1Masked SynthTrainer_Freq \\
        --configurations 3d_fullres 2.5d --orientations 1 3 9 -o documentation/benchmarks_quality.md

Equal budget: the trainer has no time limit, so ``--epochs`` is derived from the plans' estimated CPU step
time (``epochs_for_budget``); the measured wall-clock minutes of every ``synth_train`` call are reported.
Works on any raw-format dataset id: one that is not planned/preprocessed yet goes through
``synth_plan_and_preprocess`` first (``--plan_args`` adds planner options). Resumable: a fold whose
``checkpoint_final.pth`` was trained with the same number of epochs is reused (``--retrain`` forces), and
a prediction + evaluation of an unchanged checkpoint is reused (``--repredict`` forces). Work files
(presented inputs, predictions, evaluations, state.json) go to ``--work_dir``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from synthunet import env  # noqa: E402
from synthunet.utilities.atomic_io import write_text_atomic  # noqa: E402
from synthunet.utilities.files import link_or_copy  # noqa: E402
# the steps and tables live in their own modules; their names are re-exported for the benchmarks built on this one
from quality_steps import (DEFAULT_CONFIGURATIONS, BenchmarkError, Clock, StepFailed, brasyn_compatible,  # noqa: E402,F401
                           call, channel_list, checkpoint_epochs, checkpoint_signature, cli_main, cpu_model,
                           ensure_preprocessed, epochs_for, epochs_for_budget, evaluate, machine_info, machine_line,
                           match_names, present_held_out, seed_everything, write_json_atomic, write_report)
from quality_tables import (COLUMNS, METRICS, REGIONS, markdown, mean_std, read_per_case, row_tag,  # noqa: E402,F401
                            summarise, table)

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "documentation" / "benchmarks_quality.md"
DEFAULT_BASELINES = ("Baseline_Identity", "Baseline_VoxelRegression")
DEFAULT_ORIENTATIONS = (1, 3, 9)
VGG_TRAINERS = ("SynthTrainer_Perceptual", "SynthTrainer_Combined", "SynthTrainer_SRGAN")
ORACLE_FOLDER = "oracleTr"  # synthunet.dataset.example.generate.ORACLE_FOLDER (same names as imagesTr)
ORACLE_ROW = {"method": "oracle", "configuration": "—", "orientations": None, "baseline": False, "oracle": True}


class Benchmark:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clock = Clock()
        self.started_at = datetime.datetime.now().astimezone()
        self.machine = machine_info()

    # ---- state (resumable) ------------------------------------------------------------------------
    def load_state(self) -> None:
        path = self.work / "state.json"
        self.state = json.loads(path.read_text()) if path.is_file() else {"train": {}, "predict": {}}
        self.state.setdefault("oracle", {})

    def save_state(self) -> None:
        write_json_atomic(self.work / "state.json", self.state)

    # ---- set-up -----------------------------------------------------------------------------------
    def resolve(self) -> None:
        from synthunet import paths
        from synthunet.training.trainers import TRAINERS

        args = self.args
        plan_args = shlex.split(args.plan_args or "")
        self.name, self.plans = ensure_preprocessed(args.dataset, args.plans, args.configurations,
                                                    args.num_processes, plan_args, self.clock)
        self.raw = paths.raw_folder() / self.name
        self.channels = channel_list(self.plans)
        self.targets = match_names(args.targets, self.channels, "Target") if args.targets else list(self.channels)
        available = list(self.plans.configurations)
        self.configurations = (match_names(args.configurations, available, "Configuration") if args.configurations
                               else [c for c in DEFAULT_CONFIGURATIONS if c in available])
        if not self.configurations:
            raise BenchmarkError(f"none of {', '.join(DEFAULT_CONFIGURATIONS)} is planned; plans have: "
                                 f"{', '.join(available)}")
        names = list(TRAINERS)
        baseline_names = [n for n in names if n.startswith("Baseline_")]
        trainers = args.trainers if args.trainers is not None else [
            n for n in names if n not in baseline_names and (n not in VGG_TRAINERS or self.vgg_weights())]
        baselines = args.baselines if args.baselines is not None else list(DEFAULT_BASELINES)
        for name in [*trainers, *baselines]:
            if name not in TRAINERS:
                close = [n for n in names if n.lower() == name.lower()]
                hint = f" Did you mean {close[0]}?" if close else ""
                raise BenchmarkError(f"Unknown trainer {name!r}.{hint} Available: {', '.join(names)}")
        for name in trainers:
            if name in VGG_TRAINERS and not self.vgg_weights():
                raise BenchmarkError(f"{name} needs VGG-19 weights: pass --vgg_weights FILE or set "
                                     f"$SYNTHUNET_VGG19_WEIGHTS (or leave it out of --trainers)")
        # a baseline listed under --trainers is still a baseline (3D only, no epochs)
        self.baselines = list(dict.fromkeys([*baselines, *[t for t in trainers if t in baseline_names]]))
        self.trainers = [t for t in dict.fromkeys(trainers) if t not in baseline_names]
        if any(o not in (1, 3, 9) for o in args.orientations):
            raise BenchmarkError(f"--orientations takes 1, 3 or 9, got {args.orientations}")
        self.orientations = list(dict.fromkeys(args.orientations))
        self.folds = list(dict.fromkeys(args.folds))
        from synthunet.training import Experiment

        for fold in self.folds:  # folds missing from splits_final.json: an error now, not after hours
            Experiment.resolve(self.name, self.configurations[0], self.targets[0], fold, plans_name=args.plans)
        self.minutes = args.minutes
        if self.minutes is None:
            self.minutes = float(self.plans.planned_for.get("cpu_training_minutes") or 10.0)
        self.epochs = {c: epochs_for(self.plans.configuration(c), self.minutes, args.epochs, args.step_time_s,
                                     f"the plans' {c} block has no CPU step-time estimate (plans made for a GPU?): "
                                     f"pass --epochs N or --step_time_s SECONDS")
                       for c in self.configurations}
        self.work = Path(args.work_dir) if args.work_dir else paths.results_folder() / "benchmark_quality" / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.load_state()

    def vgg_weights(self) -> str | None:
        return self.args.vgg_weights or env.get(env.VGG19_WEIGHTS)

    # ---- the steps --------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """Every method x configuration x orientations to report, for one target."""
        rows = [{"method": b, "configuration": "3d_fullres", "orientations": None, "baseline": True}
                for b in self.baselines if "3d_fullres" in self.configurations]
        for trainer in self.trainers:
            for configuration in self.configurations:
                if self.plans.configuration(configuration).dimension == 2:
                    rows += [{"method": trainer, "configuration": configuration, "orientations": k, "baseline": False}
                             for k in self.orientations]
                else:
                    rows.append({"method": trainer, "configuration": configuration, "orientations": None,
                                 "baseline": False})
        return rows

    def train(self, method: str, configuration: str, target: str, fold: int, baseline: bool) -> dict:
        from synthunet.training import Experiment
        from synthunet.training.cli import main as train_main

        experiment = Experiment.resolve(self.name, configuration, target, fold, method, self.args.plans)
        final = experiment.output_folder / "checkpoint_final.pth"
        key = f"{method}|{configuration}|{target}|{fold}"
        epochs = 0 if baseline else self.epochs[configuration]["epochs"]
        record = self.state["train"].get(key)
        if final.is_file() and not self.args.retrain and checkpoint_epochs(final) == epochs:
            signature = checkpoint_signature(final)
            if record and record.get("signature") == signature:
                minutes = "unknown" if record.get("minutes") is None else f"{record['minutes']:.2f}"
                self.clock.say(f"reusing {experiment.model_folder.name}/fold_{fold} ({minutes} training minutes)")
                return record
            self.clock.say(f"reusing {experiment.model_folder.name}/fold_{fold} (trained outside this benchmark: "
                           f"training time unknown)")
            record = {"epochs": epochs, "minutes": None, "signature": signature}
            self.state["train"][key] = record
            self.save_state()
            return record
        argv = [self.name, configuration, target, str(fold), "-tr", method, "-p", self.args.plans,
                "--skip_final_validation"]
        if not baseline:
            argv += ["--epochs", str(epochs)]
        if self.args.device:
            argv += ["--device", self.args.device]
        if method in VGG_TRAINERS and self.args.vgg_weights:
            argv += ["--vgg_weights", self.args.vgg_weights]
        seed_everything(self.args.seed)
        seconds = call("synth_train", train_main, argv, self.clock)
        record = {"epochs": epochs, "minutes": seconds / 60.0, "signature": checkpoint_signature(final)}
        self.state["train"][key] = record
        self.save_state()
        return record

    def held_out(self, target: str, fold: int) -> tuple[list[str], Path, str]:
        from synthunet.training import Experiment

        key = (target, fold)
        if key not in self.presented:
            experiment = Experiment.resolve(self.name, self.configurations[0], target, fold,
                                            plans_name=self.args.plans)
            cases = sorted(experiment.fold_cases()[1])
            folder = self.work / "input" / target / f"fold_{fold}"
            layout = present_held_out(self.raw, cases, self.channels, target, folder)
            self.clock.say(f"fold {fold}: {len(cases)} held-out case(s) presented without {target} ({layout} layout)")
            self.presented[key] = (cases, folder, layout)
        return self.presented[key]

    def has_oracle(self) -> bool:
        """Whether the raw dataset has noise-free, bias-free signals (``oracleTr/``, the example dataset's)."""
        return (self.raw / ORACLE_FOLDER).is_dir()

    def score_oracle(self, target: str, fold: int) -> None:
        """The oracle row of one fold: ``oracleTr`` files of the held-out cases' ``target`` channel, scored against
        the reference with the same ``synth_evaluate`` call as a prediction (reused while the files are unchanged)."""
        from synthunet.training import Experiment

        cases = sorted(Experiment.resolve(self.name, self.configurations[0], target, fold,
                                          plans_name=self.args.plans).fold_cases()[1])
        ending = json.loads((self.raw / "dataset.json").read_text())["file_ending"]
        index = self.channels.index(target)
        sources = [self.raw / ORACLE_FOLDER / f"{case}_{index:04d}{ending}" for case in cases]
        missing = [source.name for source in sources if not source.is_file()]
        if missing:
            raise StepFailed(f"{ORACLE_FOLDER}/ has no {', '.join(missing)}")
        signature = [[source.name, *checkpoint_signature(source)] for source in sources]
        key = f"{target}|{fold}"
        evaluation = self.work / "evaluation" / row_tag(ORACLE_ROW) / target / f"fold_{fold}"
        record = self.state["oracle"].get(key)
        if (record and record.get("signature") == signature and not self.args.repredict
                and (evaluation / "per_case.csv").is_file()):
            self.clock.say(f"reusing the evaluation of the oracle {target} fold {fold}")
            return
        predictions = self.work / "predictions" / row_tag(ORACLE_ROW) / target / f"fold_{fold}"
        if predictions.exists():
            shutil.rmtree(predictions)
        predictions.mkdir(parents=True)
        for source in sources:  # raw names {case}_{XXXX}: matched to the target like a raw-named prediction
            link_or_copy(source, predictions / source.name)
        evaluate(self.raw, predictions, self.name, cases, target, evaluation, self.clock)
        self.state["oracle"][key] = {"signature": signature, "cases": len(cases)}
        self.save_state()

    def predict_and_evaluate(self, row: dict, target: str, fold: int, signature: list | None) -> dict:
        from synthunet.inference.cli import main as predict_main

        tag = row_tag(row)
        key = f"{tag}|{target}|{fold}"
        evaluation = self.work / "evaluation" / tag / target / f"fold_{fold}"
        record = self.state["predict"].get(key)
        if (record and record.get("signature") == signature and not self.args.repredict
                and (evaluation / "per_case.csv").is_file()):
            self.clock.say(f"reusing the prediction and evaluation of {tag} {target} fold {fold}")
            return record
        cases, presented, _ = self.held_out(target, fold)
        predictions = self.work / "predictions" / tag / target / f"fold_{fold}"
        if predictions.exists():
            shutil.rmtree(predictions)
        argv = ["-i", str(presented), "-o", str(predictions), "-d", self.name, "-c", row["configuration"],
                "-tr", row["method"], "-p", self.args.plans, "-f", str(fold), "--target", target, "--disable_tta",
                "-npp", str(self.args.predict_processes), "-nps", str(self.args.predict_processes)]
        if row["orientations"]:
            argv += ["--orientations", str(row["orientations"])]
        if self.args.device:
            argv += ["--device", self.args.device]
        seconds = call("synth_predict", predict_main, argv, self.clock)
        evaluate(self.raw, predictions, self.name, cases, target, evaluation, self.clock)
        record = {"signature": signature, "seconds": seconds, "cases": len(cases),
                  "seconds_per_case": seconds / max(1, len(cases))}
        self.state["predict"][key] = record
        self.save_state()
        return record

    def run(self) -> dict:
        self.resolve()
        self.presented: dict = {}
        rows = self.rows()
        if not rows:
            raise BenchmarkError("nothing to benchmark: no trainer, and no baseline (baselines need 3d_fullres in "
                                 "--configurations)")
        if self.has_oracle():
            rows.insert(0, dict(ORACLE_ROW))
            self.clock.say(f"{ORACLE_FOLDER}/ found: an oracle row (the noise-free, bias-free signal scored like a "
                           f"prediction) shows the physical limit")
        self.clock.say(f"{self.name}: targets {', '.join(self.targets)}; folds {self.folds}; "
                       f"{len(rows)} row(s) per target; budget {self.minutes:g} min per fold; work folder {self.work}")
        for configuration, info in self.epochs.items():
            self.clock.say(f"  {configuration}: {info['epochs']} epoch(s) x {info['iterations_per_epoch']} iterations "
                           f"({info['source']})")
        results: list[dict] = []
        self.failures: list[str] = []
        for target in self.targets:
            per_row = {id(row): {"train": [], "predict": [], "per_case": [], "failed": []} for row in rows}
            for done, fold in enumerate(self.folds, 1):
                trained: dict[tuple[str, str], dict | str] = {}
                for row in rows:
                    collected = per_row[id(row)]
                    model = (row["method"], row["configuration"])
                    evaluation = self.work / "evaluation" / row_tag(row) / target / f"fold_{fold}"
                    if row.get("oracle"):
                        try:
                            self.score_oracle(target, fold)
                        except StepFailed as error:
                            self.clock.say(f"FAILED (the run goes on): oracle {target} fold {fold}: {error}")
                            self.failures.append(f"oracle {target} fold {fold}: {error}")
                            collected["failed"].append(fold)
                            continue
                        collected["per_case"] += [{**r, "fold": fold}
                                                  for r in read_per_case(evaluation / "per_case.csv", target)]
                        continue
                    try:
                        if model not in trained:
                            try:
                                trained[model] = self.train(row["method"], row["configuration"], target, fold,
                                                            row["baseline"])
                            except StepFailed as error:
                                trained[model] = str(error)  # the other orientations of this model need not try
                        record = trained[model]
                        if isinstance(record, str):
                            raise StepFailed(record)
                        prediction = self.predict_and_evaluate(row, target, fold, record["signature"])
                    except StepFailed as error:
                        message = f"{row_tag(row)} {target} fold {fold}: {error}"
                        self.clock.say(f"FAILED (the run goes on): {message}")
                        self.failures.append(message)
                        collected["failed"].append(fold)
                        continue
                    collected["train"].append(record["minutes"])
                    collected["predict"].append(prediction)
                    collected["per_case"] += [{**r, "fold": fold}
                                              for r in read_per_case(evaluation / "per_case.csv", target)]
                    collected["epochs"] = record["epochs"]
                current = [summarise(row, target, per_row[id(row)], self.folds[:done]) for row in rows]
                complete = target == self.targets[-1] and done == len(self.folds)
                content = self.report(results + current, complete)
            results += current
        if self.failures:
            print(f"\n{len(self.failures)} step(s) failed (listed under the table):\n  " + "\n  ".join(self.failures),
                  file=sys.stderr)
        return content

    # ---- output -----------------------------------------------------------------------------------
    def report(self, results: list[dict], complete: bool = True) -> dict:
        """Write the table and the JSON (also after every fold, marked partial, so a long run shows progress)."""
        args = self.args
        finished = datetime.datetime.now().astimezone()
        header = {"dataset": self.name, "date": self.started_at.strftime("%Y-%m-%d %H:%M %Z"),
                  "finished": finished.strftime("%Y-%m-%d %H:%M %Z"),
                  "wall_minutes": (time.time() - self.clock.started) / 60.0, "machine": self.machine,
                  "budget_minutes_per_fold": self.minutes, "seed": args.seed, "folds": self.folds,
                  "targets": self.targets, "plans": args.plans, "device": args.device or "default",
                  "epochs": self.epochs, "predict": "synth_predict -f FOLD --disable_tta (one fold, no mirroring)",
                  "evaluation": "synth_evaluate, region mode, percentile normalisation (default)",
                  "oracle": (f"{ORACLE_FOLDER}/ of the raw dataset: the target's noise-free, bias-free signal at the "
                             f"image's gain, scored like a prediction") if self.has_oracle() else None,
                  "command": "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in self.argv)}
        content = {"header": {**header, "complete": complete}, "rows": results, "failures": list(self.failures)}
        output = Path(args.output)
        write_text_atomic(output, markdown(content))
        write_json_atomic(output.with_suffix(".json"), content)
        self.clock.say(f"wrote {output} and {output.with_suffix('.json')}" + ("" if complete else " (partial)"))
        if complete:
            print("\n" + table(results))
        return content


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name in $synthUNet_raw (any raw dataset)")
    parser.add_argument("--targets", nargs="+", default=None, help="sequences to synthesise (default: every channel)")
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds (default 0 1 2 3 4)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget per fold in minutes (default: the plans' cpu_training_minutes)")
    parser.add_argument("--trainers", nargs="*", default=None,
                        help="training recipes (default: every recipe; the VGG ones only with weights; give none "
                             "for the baselines alone)")
    parser.add_argument("--baselines", nargs="*", default=None,
                        help=f"closed-form baselines, 3d_fullres only (default: {' '.join(DEFAULT_BASELINES)}; "
                             "give none to leave them out)")
    parser.add_argument("--configurations", nargs="+", default=None,
                        help=f"configurations (default: {' '.join(DEFAULT_CONFIGURATIONS)})")
    parser.add_argument("--orientations", nargs="+", type=int, default=list(DEFAULT_ORIENTATIONS),
                        help="2.5d orientations fused at prediction time (default 1 3 9; trained once)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown table (a .json of the raw numbers is written beside it)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="presented inputs, predictions, evaluations and state.json "
                             "(default $synthUNet_results/benchmark_quality/DatasetXXX_Name)")
    parser.add_argument("-p", "--plans", default="synthUNetPlans", help="plans name (default synthUNetPlans)")
    parser.add_argument("--seed", type=int, default=0, help="torch/numpy/random seed before every training (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of the budget (GPU plans)")
    parser.add_argument("--step_time_s", type=float, default=None,
                        help="step time to turn --minutes into epochs, instead of the plans' estimate")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps for training and prediction (default: theirs)")
    parser.add_argument("--predict_processes", type=int, default=0,
                        help="synth_predict -npp/-nps (default 0: all in this process, so the timing is serial)")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="processes for plan_and_preprocess")
    parser.add_argument("--plan_args", default="",
                        help="extra synth_plan_and_preprocess options if the dataset must be planned, e.g. "
                             "\"--cpu_training_minutes 5\"")
    parser.add_argument("--vgg_weights", default=None, help="VGG-19 weights for the perceptual recipes")
    parser.add_argument("--retrain", action="store_true", help="train every fold again even if it is done")
    parser.add_argument("--repredict", action="store_true",
                        help="predict and evaluate again even if done (the oracle row too)")
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the benchmark; 1 if a step of some row failed."""
    benchmark = Benchmark(args)
    benchmark.argv = argv
    return 1 if benchmark.run()["failures"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
