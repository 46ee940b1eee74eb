"""Background processes for preprocessing and export (``-npp`` / ``-nps``); 0 runs the work in-process."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable


def _initialise_worker() -> None:
    """One thread per worker: the workers run beside the network and must not starve it."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


class InlineExecutor(Executor):
    """Runs each task at once in the calling process and returns a finished future (for ``0`` workers)."""

    def submit(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(error)
        return future


def make_executor(num_processes: int) -> Executor:
    """``num_processes`` spawned worker processes (spawn: safe beside torch threads), or in-process for 0."""
    if num_processes <= 0:
        return InlineExecutor()
    return ProcessPoolExecutor(max_workers=num_processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_initialise_worker)
