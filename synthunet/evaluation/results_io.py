"""Atomic writing and reading of the evaluation outputs (per-case CSV, summary JSON) and summary statistics."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from synthunet.utilities.atomic_io import write_text_atomic

STAT_KEYS = ("mean", "std", "median", "min", "max", "n")


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def write_csv_atomic(path: Path | str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """CSV with a header row, full float precision, NaN as ``nan``; atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(column)) for column in columns])
    write_text_atomic(path, buffer.getvalue())


def read_csv_rows(path: Path | str, numeric: Iterable[str] = ()) -> list[dict]:
    """Read a CSV written by :func:`write_csv_atomic`; the ``numeric`` columns become floats (empty -> NaN)."""
    numeric = set(numeric)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in numeric & set(row):
            text = row[key]
            row[key] = float(text) if text not in ("", None) else float("nan")
    return rows


def statistics(values: Iterable[float]) -> dict[str, float]:
    """mean, std (population), median, min, max over the finite values, and their count ``n``."""
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "min": float("nan"),
                "max": float("nan"), "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std()), "median": float(np.median(array)),
            "min": float(array.min()), "max": float(array.max()), "n": int(array.size)}


def summarise_rows(rows: Sequence[dict], metrics: Sequence[str], group_keys: Sequence[str] = ("target", "region"),
                   ) -> dict:
    """Nested ``{target: {region: {metric: statistics}}}`` over the rows (one row per case x target x region)."""
    summary: dict = {}
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group_keys), []).append(row)
    for key in groups:  # order of first appearance (regions stay brain, tumour, healthy, ...)
        node = summary
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = {metric: statistics(float(r[metric]) for r in groups[key]) for metric in metrics}
    return summary
