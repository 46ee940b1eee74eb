"""Atomic writes: a temporary name in the same folder, then one ``os.replace``, so no reader sees half a file."""
from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def temporary_sibling(path: Path | str) -> Path:
    """A unique temporary name in the same folder that keeps the file ending (``.tmp_XXXXXXXX_{name}``)."""
    path = Path(path)
    return path.with_name(f".tmp_{uuid.uuid4().hex[:8]}_{path.name}")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats by None (JSON has no NaN), numpy scalars by Python ones and paths by strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path | str, content: Any, indent: int | None = 2) -> None:
    """Write ``content`` as standard JSON (NaN and inf as null), flushed to disk, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(json_safe(content), handle, indent=indent, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
