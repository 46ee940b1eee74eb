"""Unpaired (seed 003, AN-GAN) against paired synthesis at the same CPU time budget: one target from one source
sequence (default T2W from T2F, seed 003's direction), 2.5d, one fold.

    python benchmarks/unpaired.py -d 501 --minutes 10 -o documentation/benchmarks_unpaired.md

Trains, with ``--inputs SOURCE`` both:

* ``SynthTrainer_ANGAN --unpaired`` with the ``synthUNetPlans_angan`` plans (AN generator; the planner counted
  the reverse generator and both discriminators in the step time), never shown a source/target pair;
* ``SynthTrainer`` (paired L1) with the default ``synthUNetPlans`` plans (U-Net);
* ``Baseline_HistogramMatching --unpaired`` (3d_fullres, closed form): the source mapped onto the target's
  intensity distribution, learned from disjoint halves of the training cases: what an unpaired method must beat;
* ``Baseline_TissueMatching --unpaired`` (3d_fullres, closed form): tissue matching, the same halves, AN-GAN's
  start (synthunet/training/tissue_matching.py).

Equal budget exactly as ``benchmarks/quality.py``: ``--epochs`` from ``epochs_for_budget(minutes, the plans'
2.5d estimates.step_time_s, ...)`` for each plans file; the measured minutes of every ``synth_train`` are
reported. Then the fold's validation cases are presented without the target, predicted with ``synth_predict -f
FOLD --disable_tta --orientations N`` and scored with ``synth_evaluate`` (region mode). Missing plans or
preprocessing are made with ``synth_plan_and_preprocess`` (``--architecture angan`` for the AN-GAN plans).
Resumable like quality.py (work files in ``--work_dir``; ``--retrain``, ``--repredict``).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality  # noqa: E402  (benchmarks/ is not a package; its helpers are shared)

DEFAULT_OUTPUT = HERE.parent / "documentation" / "benchmarks_unpaired.md"
CONFIGURATION = "2.5d"
#: (trainer, plans, extra synth_train arguments, description, configuration)
METHODS = (("SynthTrainer_ANGAN", "synthUNetPlans_angan", ["--unpaired"], "unpaired CycleGAN, AN generator",
            CONFIGURATION),
           ("SynthTrainer", "synthUNetPlans", [], "paired L1, U-Net", CONFIGURATION),
           ("Baseline_HistogramMatching", "synthUNetPlans", ["--unpaired"], "unpaired closed form: histogram matching",
            "3d_fullres"),
           ("Baseline_TissueMatching", "synthUNetPlans", ["--unpaired"], "unpaired closed form: tissue matching "
            "(AN-GAN's start)", "3d_fullres"))


def closed_form(trainer: str) -> bool:
    """Whether ``trainer`` is a closed-form baseline (fitted in seconds, no epochs)."""
    return trainer.startswith("Baseline_")


class UnpairedBenchmark:
    def __init__(self, args: argparse.Namespace, argv: Sequence[str]) -> None:
        self.args, self.argv = args, list(argv)
        self.clock = quality.Clock()
        self.started_at = datetime.datetime.now().astimezone()
        self.machine = quality.machine_info()
        self.failures: list[str] = []

    # ---- set-up ------------------------------------------------------------------------------------
    def resolve(self) -> None:
        from synthunet import paths
        from synthunet.training import Experiment

        args = self.args
        known = [m[0] for m in METHODS]
        unknown = sorted(set(args.methods or []) - set(known))
        if unknown:
            raise quality.BenchmarkError(f"Unknown method(s) {', '.join(unknown)}; choose from: {', '.join(known)}")
        self.methods = [m for m in METHODS if not args.methods or m[0] in args.methods]
        plan_args = shlex.split(args.plan_args or "")
        self.plans = {}
        for plans_name in dict.fromkeys(["synthUNetPlans", *(method[1] for method in self.methods)]):
            extra = ["--architecture", "angan"] if plans_name.endswith("_angan") else []
            configurations = sorted({m[4] for m in self.methods if m[1] == plans_name} or {CONFIGURATION})
            self.name, self.plans[plans_name] = quality.ensure_preprocessed(
                args.dataset, plans_name, configurations, args.num_processes, plan_args + extra, self.clock)
        self.raw = paths.raw_folder() / self.name
        self.channels = quality.channel_list(self.plans["synthUNetPlans"])
        self.source, self.target = (quality.match_names([c], self.channels, what)[0]
                                    for c, what in ((args.source, "Source"), (args.target, "Target")))
        if self.source == self.target:
            raise quality.BenchmarkError("--source and --target must differ")
        experiment = Experiment.resolve(self.name, CONFIGURATION, self.target, args.fold, inputs=[self.source])
        self.cases = sorted(experiment.fold_cases()[1])
        self.minutes = args.minutes or float(self.plans["synthUNetPlans"].planned_for
                                             .get("cpu_training_minutes") or 10.0)
        self.epochs = {plans: quality.epochs_for(self.plans[plans].configuration(CONFIGURATION), self.minutes,
                                                 args.epochs, args.step_time_s,
                                                 f"{self.plans[plans].plans_name}: the 2.5d block has no CPU "
                                                 "step-time estimate (plans made for a GPU?): pass --epochs N")
                       for plans in dict.fromkeys(method[1] for method in self.methods)}
        self.work = Path(args.work_dir) if args.work_dir else paths.results_folder() / "benchmark_unpaired" / self.name
        self.work.mkdir(parents=True, exist_ok=True)
        path = self.work / "state.json"
        self.state = json.loads(path.read_text()) if path.is_file() else {"train": {}, "predict": {}}

    def save_state(self) -> None:
        quality.write_json_atomic(self.work / "state.json", self.state)

    # ---- steps -------------------------------------------------------------------------------------
    def train(self, trainer: str, plans: str, extra: list[str], configuration: str) -> dict:
        from synthunet.training import Experiment
        from synthunet.training.cli import main as train_main

        # a closed form is fitted, not trained: 0 epochs, as its checkpoint records (quality.py's rule)
        fold, epochs = self.args.fold, 0 if closed_form(trainer) else self.epochs[plans]["epochs"]
        experiment = Experiment.resolve(self.name, configuration, self.target, fold, trainer, plans, [self.source])
        final = experiment.output_folder / "checkpoint_final.pth"
        key = f"{trainer}|{plans}|{self.source}->{self.target}|{fold}"
        record = self.state["train"].get(key)
        if (final.is_file() and not self.args.retrain and quality.checkpoint_epochs(final) == epochs and record
                and record.get("signature") == quality.checkpoint_signature(final)):
            self.clock.say(f"reusing {experiment.model_folder.name}/fold_{fold}")
            return record
        argv = [self.name, configuration, self.target, str(fold), "-tr", trainer, "-p", plans, "--inputs",
                self.source, "--skip_final_validation", *extra]
        if not closed_form(trainer):
            argv += ["--epochs", str(epochs)]
        if self.args.device:
            argv += ["--device", self.args.device]
        quality.seed_everything(self.args.seed)
        seconds = quality.call("synth_train", train_main, argv, self.clock)
        record = {"epochs": epochs, "minutes": seconds / 60.0, "signature": quality.checkpoint_signature(final)}
        self.state["train"][key] = record
        self.save_state()
        return record

    def predict_and_evaluate(self, trainer: str, plans: str, signature: list | None,
                             configuration: str) -> tuple[dict, Path]:
        from synthunet.inference.cli import main as predict_main

        tag = f"{trainer}__{plans}__o{self.args.orientations}"
        evaluation = self.work / "evaluation" / tag / self.target / f"fold_{self.args.fold}"
        key = f"{tag}|{self.source}->{self.target}|{self.args.fold}"
        record = self.state["predict"].get(key)
        if (record and record.get("signature") == signature and not self.args.repredict
                and (evaluation / "per_case.csv").is_file()):
            self.clock.say(f"reusing the prediction and evaluation of {tag}")
            return record, evaluation
        presented = self.work / "input" / self.target / f"fold_{self.args.fold}"
        if not presented.is_dir():
            layout = quality.present_held_out(self.raw, self.cases, self.channels, self.target, presented)
            self.clock.say(f"{len(self.cases)} held-out case(s) presented without {self.target} ({layout} layout)")
        predictions = self.work / "predictions" / tag / self.target / f"fold_{self.args.fold}"
        if predictions.exists():
            shutil.rmtree(predictions)
        argv = ["-i", str(presented), "-o", str(predictions), "-d", self.name, "-c", configuration, "-tr", trainer,
                "-p", plans, "-f", str(self.args.fold), "--target", self.target, "--disable_tta", "-npp", "0",
                "-nps", "0"]
        if configuration == "2.5d":
            argv += ["--orientations", str(self.args.orientations)]
        if self.args.device:
            argv += ["--device", self.args.device]
        seconds = quality.call("synth_predict", predict_main, argv, self.clock)
        quality.evaluate(self.raw, predictions, self.name, self.cases, self.target, evaluation, self.clock)
        record = {"signature": signature, "seconds": seconds, "cases": len(self.cases)}
        self.state["predict"][key] = record
        self.save_state()
        return record, evaluation

    def run(self) -> dict:
        self.resolve()
        self.clock.say(f"{self.name}: {self.target} from {self.source}, {CONFIGURATION}, fold {self.args.fold} "
                       f"({len(self.cases)} validation cases); budget {self.minutes:g} min per method")
        rows = []
        for trainer, plans, extra, description, configuration in self.methods:
            info = self.epochs[plans]
            self.clock.say(f"  {trainer} ({plans}): " + ("fitted in closed form" if closed_form(trainer) else
                           f"{info['epochs']} epoch(s) x {info['iterations_per_epoch']} iterations ({info['source']})"))
            row = {"method": f"{trainer} ({description})", "configuration": configuration,
                   "orientations": self.args.orientations if configuration == "2.5d" else None,
                   "baseline": closed_form(trainer)}
            collected = {"train": [], "predict": [], "per_case": [], "failed": []}
            try:
                record = self.train(trainer, plans, extra, configuration)
                prediction, evaluation = self.predict_and_evaluate(trainer, plans, record["signature"], configuration)
                collected["train"].append(record["minutes"])
                collected["predict"].append(prediction)
                collected["per_case"] = [{**r, "fold": self.args.fold}
                                         for r in quality.read_per_case(evaluation / "per_case.csv", self.target)]
                collected["epochs"] = record["epochs"]
            except quality.StepFailed as error:
                message = f"{trainer} ({plans}): {error}"
                self.clock.say(f"FAILED (the run goes on): {message}")
                self.failures.append(message)
                collected["failed"].append(self.args.fold)
            summary = quality.summarise(row, self.target, collected, [self.args.fold])
            rows.append({**summary, "trainer": trainer, "plans": plans, "inputs": [self.source]})
        return self.report(rows)

    # ---- output ------------------------------------------------------------------------------------
    def report(self, rows: list[dict]) -> dict:
        args = self.args
        header = {"dataset": self.name, "source": self.source, "target": self.target, "fold": args.fold,
                  "date": self.started_at.strftime("%Y-%m-%d %H:%M %Z"),
                  "wall_minutes": (time.time() - self.clock.started) / 60.0, "machine": self.machine,
                  "budget_minutes": self.minutes, "epochs": self.epochs, "seed": args.seed,
                  "device": args.device or "default", "orientations": args.orientations,
                  "command": "python benchmarks/unpaired.py " + " ".join(shlex.quote(a) for a in self.argv)}
        content = {"header": header, "rows": rows, "failures": list(self.failures)}
        output = Path(args.output)
        quality.write_text_atomic(output, markdown(content))
        quality.write_json_atomic(output.with_suffix(".json"), content)
        self.clock.say(f"wrote {output} and {output.with_suffix('.json')}")
        print("\n" + quality.table(rows))
        return content


def markdown(content: dict) -> str:
    h = content["header"]
    epochs = "; ".join(f"{plans}: {e['epochs']} epoch(s) x {e['iterations_per_epoch']} iterations ({e['source']})"
                       for plans, e in h["epochs"].items())
    lines = ["# Unpaired (AN-GAN, seed 003) vs paired synthesis", "",
             f"- dataset: {h['dataset']}; {h['target']} from {h['source']} (`--inputs {h['source']}`), 2.5d, "
             f"fold {h['fold']}",
             f"- date: {h['date']} ({h['wall_minutes']:.1f} min in all)",
             f"- machine: {quality.machine_line(h['machine'])}; device: {h['device']}",
             f"- budget: {h['budget_minutes']:g} min of training per method (quality.py's rule); {epochs}",
             f"- seed: {h['seed']} (torch, numpy and random before every synth_train)",
             f"- prediction: synth_predict -f {h['fold']} --disable_tta --orientations {h['orientations']}; "
             f"validation cases presented without {h['target']}",
             "- evaluation: synth_evaluate, region mode, percentile normalisation (default); mean ± std over cases",
             f"- command: `{h['command']}`", "",
             quality.table(content["rows"]), "",
             "SynthTrainer_ANGAN never sees a source and a target of the same case together (each batch: source "
             "and target patches from disjoint halves of the training cases); SynthTrainer trains on paired "
             "patches. Train min/fold is the measured wall clock of `synth_train`; infer s/case the wall clock of "
             "`synth_predict` divided by the cases (model loading included)."]
    if content.get("failures"):
        lines += ["", "**Failed steps:**", ""] + [f"- {failure}" for failure in content["failures"]]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", default="501", help="dataset id or name in $synthUNet_raw (default 501)")
    parser.add_argument("--source", default="T2F", help="input sequence (default T2F)")
    parser.add_argument("--target", default="T2W", help="sequence to synthesise (default T2W)")
    parser.add_argument("--fold", type=int, default=0, help="fold (default 0)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget per method in minutes (default: the plans' cpu_training_minutes)")
    parser.add_argument("--orientations", type=int, choices=(1, 3, 9), default=3,
                        help="2.5d orientations fused by synth_predict (default 3)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown table (a .json of the raw numbers is written beside it)")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="presented inputs, predictions, evaluations, state.json "
                             "(default $synthUNet_results/benchmark_unpaired/DatasetXXX_Name)")
    parser.add_argument("--seed", type=int, default=0, help="torch/numpy/random seed before every training")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of the budget (GPU plans)")
    parser.add_argument("--step_time_s", type=float, default=None,
                        help="step time to turn --minutes into epochs for both methods, instead of the plans'")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps for training and prediction")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="processes for plan_and_preprocess")
    parser.add_argument("--plan_args", default="",
                        help="extra synth_plan_and_preprocess options if plans are missing, e.g. "
                             "\"--cpu_training_minutes 5\"")
    parser.add_argument("--methods", nargs="+", default=None, metavar="TRAINER",
                        help=f"only these rows (default all: {', '.join(m[0] for m in METHODS)})")
    parser.add_argument("--retrain", action="store_true", help="train again even if done")
    parser.add_argument("--repredict", action="store_true", help="predict and evaluate again even if done")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return quality.cli_main(argv, build_parser,
                            lambda args, argv: 1 if UnpairedBenchmark(args, argv).run()["failures"] else 0)


if __name__ == "__main__":
    sys.exit(main())
