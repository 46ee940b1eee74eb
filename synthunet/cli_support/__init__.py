"""Shared command-line plumbing: turn expected errors into a clear message and an exit code."""
from __future__ import annotations

import os
import sys
from typing import Callable

from synthunet.dataset.dataset_json import DatasetJsonError
from synthunet.dataset.identifiers import DatasetNotFoundError
from synthunet.paths import PathNotConfiguredError

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (PathNotConfiguredError, DatasetNotFoundError, DatasetJsonError,
                                                    FileNotFoundError, FileExistsError, ValueError, KeyError)


def run_cli(action: Callable[[], int | None]) -> int:
    """Run a command body; print expected errors as ``error: ...`` and return 2.

    Set ``SYNTHUNET_DEBUG=1`` to get the full traceback instead.
    """
    try:
        result = action()
    except EXPECTED_ERRORS as error:
        if os.environ.get("SYNTHUNET_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
