"""The tables of ``benchmarks/quality.py``: per-case scores read back, mean +- std per row, the markdown table and
report."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

from quality_steps import machine_line

REGIONS = ("brain", "tumour", "healthy")
METRICS = (("PSNR", 2), ("SSIM", 4))


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
