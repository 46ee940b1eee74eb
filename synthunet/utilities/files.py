"""Placing an existing file under a second name without copying its bytes where the file system allows."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(source: Path | str, destination: Path | str) -> None:
    """Hard-link ``source`` as ``destination``; copy it (with its metadata) where a link is not possible, e.g.
    across file systems or on one that has no hard links."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
