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
import contextlib
import csv
import datetime
import json
import math
import os
import platform
import random
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from synthunet import env
from synthunet.errors import SynthUNetError
from synthunet.plans import TrainingPlan
from synthunet.utilities.atomic_io import write_text_atomic

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "documentation" / "benchmarks_quality.md"
REGIONS = ("brain", "tumour", "healthy")
METRICS = (("PSNR", 2), ("SSIM", 4))
DEFAULT_BASELINES = ("Baseline_Identity", "Baseline_VoxelRegression")
DEFAULT_CONFIGURATIONS = ("3d_fullres", "2.5d")
DEFAULT_ORIENTATIONS = (1, 3, 9)
VGG_TRAINERS = ("SynthTrainer_Perceptual", "SynthTrainer_Combined", "SynthTrainer_SRGAN")
ORACLE_FOLDER = "oracleTr"  # synthunet.dataset.example.generate.ORACLE_FOLDER (same names as imagesTr)
ORACLE_ROW = {"method": "oracle", "configuration": "—", "orientations": None, "baseline": False, "oracle": True}


class BenchmarkError(SynthUNetError, ValueError):
    """A problem the user can fix (printed as ``error: ...`` by ``run_cli``)."""


class StepFailed(BenchmarkError):
    """One synthUNet command of one row failed; the row is reported without it and the run goes on."""


class _TeeStderr:
    """Writes to the real stderr and remembers the last ``error: ...`` line (what run_cli printed)."""

    def __init__(self, stream) -> None:
        self.stream, self.last_error = stream, None

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith("error: "):
                self.last_error = line[len("error: "):]
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


# ---------------------------------------------------------------------------------------------------
# small helpers


def epochs_for_budget(minutes: float, step_time_s: float, iterations_per_epoch: int,
                      val_iterations_per_epoch: int) -> int:
    """Epochs that fill ``minutes`` of training: the planner's CPU time model (planning/training_plan.py).

    One epoch costs ``step_time_s x 1.1 (overhead) x (iterations + validation iterations / 3)`` seconds
    (a validation iteration is forward only). At least one epoch.
    """
    from synthunet.planning.training_plan import CPU_OVERHEAD_FACTOR, VALIDATION_COST

    if minutes <= 0:
        raise BenchmarkError(f"--minutes must be positive, got {minutes}")
    if step_time_s is None or step_time_s <= 0:
        raise BenchmarkError(f"a positive step time is needed to turn minutes into epochs, got {step_time_s}")
    epoch_s = step_time_s * CPU_OVERHEAD_FACTOR * (iterations_per_epoch + VALIDATION_COST * val_iterations_per_epoch)
    return max(1, round(minutes * 60.0 / epoch_s))


def epochs_for(block: dict, minutes: float, epochs: int | None, step_time_s: float | None, missing: str) -> dict:
    """Epochs of one plans configuration ``block`` for ``minutes`` (``epochs_for_budget`` with ``step_time_s``,
    else the block's estimated CPU step time); ``epochs`` (``--epochs``) fixes them. Without a step time:
    ``BenchmarkError(missing)``."""
    training = TrainingPlan.from_dict(block.get("training", {}))
    iterations, val_iterations = training.iterations_per_epoch, training.val_iterations_per_epoch
    step = step_time_s or block.get("estimates", {}).get("step_time_s")
    if epochs:
        source = "--epochs"
    else:
        if not step:
            raise BenchmarkError(missing)
        epochs = epochs_for_budget(minutes, float(step), iterations, val_iterations)
        source = f"{minutes:g} min / estimated step {float(step):.3g} s"
    return {"epochs": epochs, "iterations_per_epoch": iterations, "val_iterations_per_epoch": val_iterations,
            "step_time_s": step, "source": source}


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random (before every ``synth_train``)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Platform, CPU model, cores, torch version and threads, the worker/thread overrides, load average."""
    import torch

    info = {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None,
            env.NUM_WORKERS: env.get(env.NUM_WORKERS), env.NUM_THREADS: env.get(env.NUM_THREADS)}
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


def machine_line(info: dict) -> str:
    text = (f"{info['platform']}; CPU {info['cpu_model']} ({info['cpu_count']} cores); python {info['python']}, "
            f"torch {info['torch']} ({info['torch_threads']} threads at start)")
    if info.get("cuda"):
        text += f"; GPU {info['cuda']}"
    names = [env.NUM_WORKERS, env.NUM_THREADS] + [old for new in (env.NUM_WORKERS, env.NUM_THREADS)
                                                  for old in env.DEPRECATED_NAMES[new]]  # older JSON files: old names
    overrides = [f"{k}={info[k]}" for k in names if info.get(k) is not None]
    if overrides:
        text += "; " + ", ".join(overrides)
    if info.get("load_average"):
        text += f"; load average {info['load_average'][0]} at start"
    return text


def write_json_atomic(path: Path, content: object) -> None:
    """JSON of a benchmark's state or results (objects JSON does not know are written as strings), atomically."""
    write_text_atomic(path, json.dumps(content, indent=1, default=str) + "\n")


class Clock:
    """Prints one line per step with the seconds since the benchmark started."""

    def __init__(self) -> None:
        self.started = time.time()

    def say(self, message: str) -> None:
        print(f"[{time.time() - self.started:7.0f} s] {message}", flush=True)


def call(name: str, main: Callable[[list[str]], int], argv: list[str], clock: Clock) -> float:
    """Run a synthUNet command's Python main; return its wall-clock seconds; raise on a non-zero exit."""
    clock.say(f"$ {name} {' '.join(shlex.quote(a) for a in argv)}")
    started = time.perf_counter()
    tee = _TeeStderr(sys.stderr)
    try:
        with contextlib.redirect_stderr(tee):
            code = main(argv)
    except Exception as error:  # a crash of one recipe (say, out of memory) must not end a long benchmark
        if env.get(env.DEBUG):
            raise
        traceback.print_exc()
        raise StepFailed(f"{name} raised {type(error).__name__}: {error}") from error
    seconds = time.perf_counter() - started
    if code:
        raise StepFailed(f"{name} failed with exit code {code}: {tee.last_error or 'see its output above'}")
    clock.say(f"  {name} took {seconds:.1f} s")
    return seconds


def evaluate(raw: Path, predictions: Path, dataset: str, cases: Sequence[str], target: str, output: Path,
             clock: Clock, *options: str) -> None:
    """``synth_evaluate`` (region mode) of ``predictions`` of ``target`` against the raw dataset's images, with its
    ``labelsTr`` and ``masksTr`` when present; ``options``: more synth_evaluate options."""
    from synthunet.evaluation.cli import evaluate_main

    argv = ["-ref", str(raw / "imagesTr"), "-pred", str(predictions), "-d", dataset, "--cases", *cases,
            "--targets", target, *options, "-o", str(output), "--quiet"]
    for flag, sub in (("-l", "labelsTr"), ("-m", "masksTr")):
        if (raw / sub).is_dir():
            argv += [flag, str(raw / sub)]
    call("synth_evaluate", evaluate_main, argv, clock)


def checkpoint_signature(path: Path) -> list[int] | None:
    """(mtime_ns, size) of a checkpoint: a changed file means a new model."""
    if not path.is_file():
        return None
    stat = path.stat()
    return [stat.st_mtime_ns, stat.st_size]


def checkpoint_epochs(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True).get("num_epochs"))
    except Exception:  # unreadable or foreign checkpoint: train again
        return None


# ---------------------------------------------------------------------------------------------------
# dataset


def ensure_preprocessed(dataset: str, plans_name: str, configurations: Sequence[str] | None, num_processes: int,
                        plan_args: Sequence[str], clock: Clock) -> tuple[str, dict]:
    """Dataset name and plans; runs synth_plan_and_preprocess when plans or preprocessed cases are missing."""
    from synthunet import paths
    from synthunet.dataset.identifiers import resolve_dataset_name
    from synthunet.preprocessing.dataset_preprocessing import list_preprocessed_cases
    from synthunet.dataset.raw_cases import list_raw_cases

    name = resolve_dataset_name(dataset)
    raw = paths.raw_folder() / name
    if not (raw / "dataset.json").is_file():
        raise BenchmarkError(f"{raw} is not a raw dataset (no dataset.json): the benchmark presents the held-out "
                             f"cases from the raw images, so $synthUNet_raw must hold the dataset")
    plans_path = paths.preprocessed_folder() / name / f"{plans_name}.json"
    missing = [] if plans_path.is_file() else [f"{plans_path.name}"]
    if not missing:
        plans = json.loads(plans_path.read_text())
        wanted = configurations or [c for c in DEFAULT_CONFIGURATIONS if c in plans["configurations"]]
        n_raw = len(list_raw_cases(raw))
        for configuration in wanted:
            block = plans["configurations"].get(configuration)
            if block is None:
                missing.append(f"configuration {configuration}")
                continue
            folder = paths.preprocessed_folder() / name / block["data_identifier"]
            done = len(list_preprocessed_cases(folder)) if folder.is_dir() else 0
            if done < n_raw:
                missing.append(f"{configuration} ({done} of {n_raw} cases preprocessed)")
    if missing:
        from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main

        clock.say(f"{name} is not ready ({', '.join(missing)}): planning and preprocessing it")
        argv = ["-d", name, "-np", str(num_processes), "-p", plans_name]
        if configurations and "-c" not in plan_args:
            argv += ["-c", *configurations]
        call("synth_plan_and_preprocess", plan_and_preprocess_main, argv + list(plan_args), clock)
        if not plans_path.is_file():
            raise BenchmarkError(f"synth_plan_and_preprocess did not write {plans_path}")
    return name, json.loads(plans_path.read_text())


def channel_list(plans: dict) -> list[str]:
    names = plans["channel_names"]
    return [names[k] for k in sorted(names, key=int)]


def match_names(requested: Sequence[str], available: Sequence[str], what: str) -> list[str]:
    result = []
    for item in requested:
        found = [a for a in available if a.lower() == str(item).lower()]
        if not found:
            raise BenchmarkError(f"{what} {item!r} is not available; choose from: {', '.join(available)}")
        result.append(found[0])
    return result


def brasyn_compatible(channels: Sequence[str], ending: str) -> bool:
    from synthunet.inference.layout import BRATS_SUFFIX_OF

    return ending in (".nii.gz", ".nii") and all(BRATS_SUFFIX_OF.get(c.upper()) == c.lower() for c in channels)


def present_held_out(raw: Path, cases: Sequence[str], channels: list[str], target: str, output: Path) -> str:
    """The held-out cases without ``target``: BraSyn-style case folders (quickstart's), else raw layout."""
    ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
    if brasyn_compatible(channels, ending):
        from synthunet.quickstart import present_brasyn_style

        present_brasyn_style(raw, cases, channels, target, output)
        return "BraSyn"
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for case in cases:
        for index, channel in enumerate(channels):
            if channel == target:
                continue
            source = raw / "imagesTr" / f"{case}_{index:04d}{ending}"
            destination = output / source.name
            try:
                os.link(source, destination)
            except OSError:
                shutil.copy2(source, destination)
    return "raw"


# ---------------------------------------------------------------------------------------------------
# the benchmark


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
        available = list(self.plans["configurations"])
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
            self.minutes = float(self.plans.get("planned_for", {}).get("cpu_training_minutes") or 10.0)
        self.epochs = {c: epochs_for(self.plans["configurations"][c], self.minutes, args.epochs, args.step_time_s,
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
                if int(self.plans["configurations"][configuration]["dimension"]) == 2:
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
            try:
                os.link(source, predictions / source.name)
            except OSError:
                shutil.copy2(source, predictions / source.name)
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


def row_tag(row: dict) -> str:
    """Folder name of one row's predictions and evaluations: ``{method}__{configuration}__{o1|o3|o9|3d}``
    (``oracle`` for the oracle row)."""
    if row.get("oracle"):
        return "oracle"
    return f"{row['method']}__{row['configuration']}__" + (f"o{row['orientations']}" if row["orientations"] else "3d")


def read_per_case(path: Path, target: str) -> list[dict]:
    with open(path, newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["target"].lower() == target.lower()]


def mean_std(values: Sequence[float]) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(finite) / len(finite)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite)), "n": len(finite)}


def summarise(row: dict, target: str, collected: dict, folds: Sequence[int]) -> dict:
    """Mean +- std (population) over all held-out cases of all folds, per region and metric."""
    metrics: dict = {}
    for region in REGIONS:
        region_rows = [r for r in collected["per_case"] if r["region"] == region]
        metrics[region] = {m: mean_std([float(r[m]) for r in region_rows]) for m, _ in METRICS}
    cases = {(r["fold"], r["case"]) for r in collected["per_case"]}
    train_minutes = [m for m in collected["train"] if m is not None]
    seconds = sum(p["seconds"] for p in collected["predict"])
    n_predicted = sum(p["cases"] for p in collected["predict"])
    return {"method": row["method"], "configuration": row["configuration"], "orientations": row["orientations"],
            "target": target, "baseline": row["baseline"], "folds": [f for f in folds if f not in collected["failed"]],
            "failed_folds": list(collected["failed"]), "n_cases": len(cases),
            "epochs": collected.get("epochs"), "metrics": metrics,
            "train_minutes_per_fold": sum(train_minutes) / len(train_minutes) if train_minutes else None,
            "train_minutes": collected["train"],
            "infer_seconds_per_case": seconds / n_predicted if n_predicted else None}


def _cell(stats: dict, digits: int) -> str:
    if stats.get("mean") is None:
        return "n/a"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


COLUMNS = ["method", "configuration", "orientations", "target", "n cases",
           *[f"{region} {metric}" for region in REGIONS for metric, _ in METRICS], "train min/fold", "infer s/case"]


def table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = [r["method"], r["configuration"], str(r["orientations"]) if r["orientations"] else "—", r["target"],
                 str(r["n_cases"])]
        cells += [_cell(r["metrics"][region][metric], digits) for region in REGIONS for metric, digits in METRICS]
        cells.append("n/a" if r["train_minutes_per_fold"] is None else f"{r['train_minutes_per_fold']:.2f}")
        cells.append("n/a" if r["infer_seconds_per_case"] is None else f"{r['infer_seconds_per_case']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(content: dict) -> str:
    h = content["header"]
    epochs = "; ".join(f"{c}: {e['epochs']} epoch(s) x {e['iterations_per_epoch']} iterations ({e['source']})"
                       for c, e in h["epochs"].items())
    lines = ["# Synthesis quality benchmark", ""]
    if not h.get("complete", True):
        lines += ["**Partial results: the run is still going or was interrupted (rows count the folds done so far).**",
                  ""]
    lines += [f"- dataset: {h['dataset']} (plans {h['plans']}); targets: {', '.join(h['targets'])}; "
              f"folds: {', '.join(map(str, h['folds']))}",
              f"- date: {h['date']} (finished {h['finished']}, {h['wall_minutes']:.1f} min in all)",
              f"- machine: {machine_line(h['machine'])}; device: {h['device']}",
              f"- budget: {h['budget_minutes_per_fold']:g} min of training per fold; {epochs}. Baselines are "
              f"fitted in closed form (no epochs).",
              f"- seed: {h['seed']} (torch, numpy and random before every synth_train; splits_final.json's own seed)",
              f"- prediction: {h['predict']}; held-out cases presented without the target",
              f"- evaluation: {h['evaluation']}; mean ± std over all held-out cases of all folds",
              *([f"- oracle row: {h['oracle']}. It differs from the reference only by the target's own noise and "
                 f"bias field, which no input carries: the physical limit, what a perfect model of the data would "
                 f"score"] if h.get("oracle") else []),
              f"- command: `{h['command']}`", "",
              table(content["rows"]), "",
              "Train min/fold is the measured wall clock of `synth_train` (n/a: the checkpoint was trained outside "
              "this benchmark); infer s/case is the wall clock of `synth_predict` divided by the cases "
              "(model loading included); the oracle row has neither. n/a in a metric: no such region (no labels) or no "
              "finite value."]
    if content.get("failures"):
        lines += ["", "**Failed steps** (these rows average over the folds that worked; n cases counts them):", ""]
        lines += [f"- {failure}" for failure in content["failures"]]
    return "\n".join(lines) + "\n"


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from synthunet.cli_support import run_cli

    benchmark = Benchmark(args)
    benchmark.argv = argv
    return run_cli(lambda: 1 if benchmark.run()["failures"] else 0)


if __name__ == "__main__":
    sys.exit(main())
