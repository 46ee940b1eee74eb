"""Speed benchmarks in one page: preprocessing cases/min, training it/s and data-wait fraction, inference
seconds per case against the FLOP-bound lower limit.

Runs the three speed scripts of this folder as subprocesses (the same commands a user runs by hand) and
collects their numbers into one markdown section plus a JSON beside it:

    python benchmarks/speed.py -d 501 --quick            # a few minutes on a small CPU
    python benchmarks/speed.py -d 501 -o documentation/benchmarks_speed.md
    python benchmarks/speed.py -d 501 --only train --configurations 3d_fullres --device cuda

| part | script | full run | --quick |
|---|---|---|---|
| preprocess | preprocess.py -d D -np 1 2 --json | every case, twice | first 4 cases, -np 1 |
| train | train_throughput.py -d D -c ... --json | 3 warm-up + 20 steps per configuration | 1 + 5 steps |
| inference | inference.py | BraTS-sized volume 240 x 240 x 155 | 64 x 96 x 96 volume, 1 repeat, no end-to-end check |

The inference part times networks planned for this CPU on a BraTS-like fingerprint and random data (it
does not read the dataset). Training throughput needs the dataset planned and preprocessed; one that is
not goes through synth_plan_and_preprocess first (``--plan_args`` adds planner options). A part that
fails is reported with its error and the others still run (exit code 1).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE.parent / "documentation" / "benchmarks_speed.md"
PARTS = ("preprocess", "train", "inference")


def _quality():
    """benchmarks/quality.py (machine description, dataset preparation); benchmarks/ is not a package."""
    name = "synthunet_benchmark_quality"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "quality.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_script(script: str, arguments: list[str]) -> tuple[int, str, str, float]:
    """Run ``python benchmarks/SCRIPT ARGS``, echoing its output; (exit code, stdout, stderr, seconds)."""
    command = [sys.executable, str(HERE / script), *arguments]
    print(f"\n$ python benchmarks/{script} {' '.join(shlex.quote(a) for a in arguments)}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    stdout_lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:  # echo as it comes: the full runs take minutes
        print(line, end="", flush=True)
        stdout_lines.append(line)
    stderr = process.stderr.read() if process.stderr else ""
    code = process.wait()
    seconds = time.perf_counter() - started
    if stderr.strip():
        print(stderr, end="" if stderr.endswith("\n") else "\n", file=sys.stderr, flush=True)
    print(f"  (took {seconds:.0f} s, exit code {code})", flush=True)
    return code, "".join(stdout_lines), stderr, seconds


def _error_tail(stderr: str, lines: int = 5) -> str:
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return " / ".join(tail) or "no message"


def preprocess_arguments(dataset: str, quick: bool, plans: str, configuration: str) -> list[str]:
    arguments = ["-d", dataset, "-p", plans, "-c", configuration]
    return arguments + (["--max_cases", "4", "-np", "1"] if quick else ["-np", "1", "2"])


def train_arguments(dataset: str, quick: bool, configurations: Sequence[str], target: str, trainer: str,
                    device: str | None) -> list[str]:
    arguments = ["-d", dataset, "-c", *configurations, "-t", target, "-tr", trainer]
    arguments += ["--iterations", "5", "--warmup", "1"] if quick else []
    return arguments + (["--device", device] if device else [])


def inference_arguments(quick: bool) -> list[str]:
    return ["--shape", "64", "96", "96", "--repeats", "1", "--no-check"] if quick else []


def parse_inference_output(stdout: str) -> str | None:
    """The markdown block inference.py prints (from its 'Volume ...' line to the end)."""
    match = re.search(r"^Volume .*", stdout, flags=re.S | re.M)
    return match.group(0).strip() if match else None


def preprocess_table(results: list[dict]) -> str:
    lines = ["| processes | cases | seconds | **cases/min** | peak RSS main MB | largest worker MB | output MB |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['num_processes']} | {r['cases']} | {r['seconds']:.1f} | **{r['cases_per_minute']:.1f}** | "
                     f"{r['peak_rss_main_mb']:.0f} | {r['peak_rss_largest_worker_mb']:.0f} | {r['output_mb']:.0f} |")
    return "\n".join(lines)


def train_table(results: list[dict]) -> str:
    lines = ["| configuration | target | trainer | patch x batch | workers | torch threads | device | **it/s** | "
             "s/step | planned s/step | **data wait** | one worker s/batch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        planned = r.get("planned_step_time_s")
        lines.append(f"| {r['configuration']} | {r['target']} | {r['trainer']} | "
                     f"{' x '.join(map(str, r['patch_size']))} x {r['batch_size']} | {r['workers']} | "
                     f"{r['torch_threads']} | {r['device']} | **{r['iterations_per_s']:.2f}** | "
                     f"{r['step_time_s']:.3f} | {'n/a' if planned is None else f'{planned:.3f}'} | "
                     f"**{100 * r['data_wait_fraction']:.1f} %** | {r['one_worker_batch_time_s']:.3f} |")
    return "\n".join(lines)


def markdown(content: dict) -> str:
    quality = _quality()
    h = content["header"]
    lines = ["# Speed benchmarks", "",
             f"- date: {h['date']} ({h['wall_minutes']:.1f} min in all); mode: {h['mode']}",
             f"- machine: {quality.machine_line(h['machine'])}",
             f"- dataset: {h['dataset']}", f"- command: `{h['command']}`"]
    parts = content["parts"]
    if "preprocess" in parts:
        part = parts["preprocess"]
        lines += ["", "## Preprocessing", "", f"`{part['command']}` ({part['seconds']:.0f} s). Each process count "
                  "preprocesses the cases from scratch into a temporary folder, in a fresh process (peak memory).", ""]
        lines += [preprocess_table(part["results"]) if part.get("results") else f"failed: {part.get('error')}"]
    if "train" in parts:
        part = parts["train"]
        lines += ["", "## Training throughput", "", f"`{part['command']}` ({part['seconds']:.0f} s). The real "
                  "SynthTrainer step with background workers, no checkpoints; data wait = time in `next(batches)` / "
                  "step time; planned s/step = the plans' estimate the CPU schedule was made from.", ""]
        lines += [train_table(part["results"]) if part.get("results") else f"failed: {part.get('error')}"]
    if "inference" in parts:
        part = parts["inference"]
        lines += ["", "## Inference", "", f"`{part['command']}` ({part['seconds']:.0f} s). Seconds per case from "
                  "measured parts (network time per batch x batches x flips x folds + the pipeline's own time); "
                  "the FLOP-bound lower limit is patches x flips x folds x FLOPs per patch / the measured conv "
                  "throughput; ratio = seconds per case / lower limit.", ""]
        lines += [part["results"] if part.get("results") else f"failed: {part.get('error')}"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    quality = _quality()
    clock = quality.Clock()
    started_at = datetime.datetime.now().astimezone()
    machine = quality.machine_info()
    parts = list(dict.fromkeys(args.only or PARTS))
    name, plans = args.dataset, None
    if "train" in parts:  # needs the preprocessed dataset
        name, plans = quality.ensure_preprocessed(args.dataset, args.plans, args.configurations, args.num_processes,
                                                  shlex.split(args.plan_args or ""), clock)
    elif "preprocess" in parts:  # the plans if there are any (preprocess.py makes minimal ones otherwise)
        from synthunet.dataset.identifiers import resolve_dataset_name
        from synthunet.plans import as_plans
        from synthunet.preprocessing import load_plans

        name = resolve_dataset_name(args.dataset)
        try:
            plans = as_plans(load_plans(name, args.plans))
        except FileNotFoundError:
            plans = None
    configurations = args.configurations or [c for c in quality.DEFAULT_CONFIGURATIONS
                                             if plans and c in plans.configurations] or ["3d_fullres"]
    channels = quality.channel_list(plans) if plans else []
    target = args.target or ("T1C" if "T1C" in channels else channels[-1] if channels else "T1C")
    content: dict = {"parts": {}}
    with tempfile.TemporaryDirectory(prefix="synthunet_speed_") as scratch:
        if "preprocess" in parts:
            arguments = preprocess_arguments(name, args.quick, args.plans, "3d_fullres" if "3d_fullres" in
                                             configurations else configurations[0])
            json_path = Path(scratch) / "preprocess.json"
            code, _, stderr, seconds = run_script("preprocess.py", [*arguments, "--json", str(json_path)])
            part = {"command": "python benchmarks/preprocess.py " + " ".join(arguments), "seconds": seconds}
            if code == 0 and json_path.is_file():
                part["results"] = json.loads(json_path.read_text()).get("throughput", [])
            else:
                part["error"] = f"exit code {code}: {_error_tail(stderr)}"
            content["parts"]["preprocess"] = part
        if "train" in parts:
            arguments = train_arguments(name, args.quick, configurations, target, args.trainer, args.device)
            json_path = Path(scratch) / "train.json"
            code, _, stderr, seconds = run_script("train_throughput.py", [*arguments, "--json", str(json_path)])
            part = {"command": "python benchmarks/train_throughput.py " + " ".join(arguments), "seconds": seconds}
            if code == 0 and json_path.is_file():
                part["results"] = json.loads(json_path.read_text())
            else:
                part["error"] = f"exit code {code}: {_error_tail(stderr)}"
            content["parts"]["train"] = part
        if "inference" in parts:
            arguments = inference_arguments(args.quick)
            code, stdout, stderr, seconds = run_script("inference.py", arguments)
            part = {"command": ("python benchmarks/inference.py " + " ".join(arguments)).strip(), "seconds": seconds}
            block = parse_inference_output(stdout) if code == 0 else None
            if block:
                part["results"] = block
            else:
                part["error"] = f"exit code {code}: {_error_tail(stderr)}"
            content["parts"]["inference"] = part
    content["header"] = {"date": started_at.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine,
                         "wall_minutes": (time.time() - clock.started) / 60.0, "dataset": name,
                         "mode": "quick (--quick: small settings)" if args.quick else "full",
                         "command": "python benchmarks/speed.py " + " ".join(shlex.quote(a) for a in argv)}
    quality.write_report(args.output, markdown(content), content, clock)
    return content


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", default="501", help="dataset id or name (default 501)")
    parser.add_argument("--quick", action="store_true", help="small settings for every part (see the table above)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=None, help="run only these parts")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown section (a .json of the raw numbers is written beside it)")
    parser.add_argument("-p", "--plans", default="synthUNetPlans", help="plans name (default synthUNetPlans)")
    parser.add_argument("--configurations", nargs="+", default=None,
                        help="configurations for training throughput (default: 2.5d and 3d_fullres, as planned)")
    parser.add_argument("--target", default=None, help="target for training throughput (default T1C, else the "
                                                       "last channel)")
    parser.add_argument("-tr", "--trainer", default="SynthTrainer", help="recipe for training throughput")
    parser.add_argument("--device", default=None, help="training throughput device (default cpu)")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="processes for plan_and_preprocess")
    parser.add_argument("--plan_args", default="",
                        help="extra synth_plan_and_preprocess options if the dataset must be planned first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from synthunet.cli_support import run_cli

    return run_cli(lambda: 1 if any("error" in p for p in run(args, argv)["parts"].values()) else 0)


if __name__ == "__main__":
    sys.exit(main())
