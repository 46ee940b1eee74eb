"""Writing and reading plans files: readable JSON (short lists on one line), written atomically."""
from __future__ import annotations

import json
from pathlib import Path

from synthunet.plans import as_plans
from synthunet.utilities.atomic_io import write_text_atomic


def _is_flat(value) -> bool:
    scalar = (int, float, str, bool, type(None))
    return isinstance(value, list) and all(
        isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(w, scalar) for w in v)) for v in value)


def dumps_plans(value, indent: int = 2, level: int = 0) -> str:
    """JSON with dicts indented and lists of numbers (or of short number lists) on one line."""
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps_plans(v, indent, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and not _is_flat(value):
        items = [f"{inner}{dumps_plans(v, indent, level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, separators=(", ", ": "))


def write_plans(plans: dict, path: Path | str) -> Path:
    """Write ``plans`` to ``path`` atomically (temporary name in the same folder, then rename), after checking it
    against the typed plans (:mod:`synthunet.plans`): a writer cannot produce a file the readers reject."""
    path = Path(path)
    as_plans(plans, str(path))
    write_text_atomic(path, dumps_plans(plans) + "\n")
    return path


def read_plans(path: Path | str) -> dict:
    """Read a plans file."""
    return json.loads(Path(path).read_text())
