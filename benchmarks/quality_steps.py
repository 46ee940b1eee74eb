"""The steps and helpers of ``benchmarks/quality.py`` (and of the benchmarks built on it): errors, the time budget
in epochs, machine facts, running one synthUNet command in this process, evaluating a prediction folder, reusing
checkpoints, planning and preprocessing a dataset, and presenting held-out cases without their target.
"""
from __future__ import annotations

import argparse
import contextlib
import json
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
from synthunet.plans import ConfigurationPlan, Plans, as_plans
from synthunet.utilities.atomic_io import write_text_atomic
from synthunet.utilities.files import link_or_copy

DEFAULT_CONFIGURATIONS = ("3d_fullres", "2.5d")


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


def cli_main(argv: Sequence[str] | None, build_parser: Callable[[], argparse.ArgumentParser],
             run: Callable[[argparse.Namespace, list[str]], int]) -> int:
    """A benchmark's ``main``: parse ``argv`` (default: the command line) with ``build_parser()`` and return
    ``run(args, argv)`` under ``run_cli`` (an ``error: ...`` line and exit code 2 for a user error, not a traceback)."""
    from synthunet.cli_support import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args, argv))


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


def epochs_for(block: ConfigurationPlan, minutes: float, epochs: int | None, step_time_s: float | None,
               missing: str) -> dict:
    """Epochs of one plans configuration ``block`` for ``minutes`` (``epochs_for_budget`` with ``step_time_s``,
    else the block's estimated CPU step time); ``epochs`` (``--epochs``) fixes them. Without a step time:
    ``BenchmarkError(missing)``."""
    iterations, val_iterations = block.training.iterations_per_epoch, block.training.val_iterations_per_epoch
    step = step_time_s or block.estimates.get("step_time_s")
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


def write_report(output: Path | str, markdown_text: str, content: object, clock: "Clock") -> None:
    """A benchmark's results: ``markdown_text`` at ``output`` and ``content`` as JSON beside it (``.json``), both
    atomically; says where."""
    output = Path(output)
    write_text_atomic(output, markdown_text)
    write_json_atomic(output.with_suffix(".json"), content)
    clock.say(f"wrote {output} and {output.with_suffix('.json')}")


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
                        plan_args: Sequence[str], clock: Clock) -> tuple[str, Plans]:
    """Dataset name and (typed) plans; runs synth_plan_and_preprocess when plans or preprocessed cases are
    missing."""
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
        plans = as_plans(json.loads(plans_path.read_text()), str(plans_path))
        wanted = configurations or [c for c in DEFAULT_CONFIGURATIONS if c in plans.configurations]
        n_raw = len(list_raw_cases(raw))
        for configuration in wanted:
            block = plans.configurations.get(configuration)
            if block is None:
                missing.append(f"configuration {configuration}")
                continue
            folder = paths.preprocessed_folder() / name / block.data_identifier
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
    return name, as_plans(json.loads(plans_path.read_text()), str(plans_path))


def channel_list(plans: Plans) -> list[str]:
    return plans.channels


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
            link_or_copy(source, destination)
    return "raw"


# ---------------------------------------------------------------------------------------------------
# the benchmark
