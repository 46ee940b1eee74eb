"""Background processes for preprocessing and export (``-npp`` / ``-nps``); 0 runs the work in-process.

The workers end when the process that started them ends, even when it is killed (``kill -9``, the
out-of-memory killer): they never keep running, holding memory, after their parent is gone.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable

from synthunet.utilities.threads import use_one_thread


def exit_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when its parent ends, even by ``kill -9`` (which runs no clean-up).

    Linux: the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``; strictly, when the
    parent's thread that started the worker ends: a process pool starts its workers in the thread that submits
    work, the main thread in synthUNet). Elsewhere: a daemon thread checks every second whether the parent is
    still the parent.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl: fall back to watching
            pass
        else:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:  # pragma: no cover - not Linux
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _initialise_worker(parent_pid: int) -> None:
    """One thread per worker: the workers run beside the network and must not starve it; end with the parent."""
    exit_with_parent(parent_pid)
    use_one_thread()


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
    """``num_processes`` spawned worker processes (spawn: safe beside torch threads), or in-process for 0.

    Its own pool, not :func:`synthunet.utilities.parallel.run_parallel` (which maps a function over a list
    known in advance): prediction hands cases to it one at a time while the network works, and its workers
    end with their parent.
    """
    if num_processes <= 0:
        return InlineExecutor()
    return ProcessPoolExecutor(max_workers=num_processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_initialise_worker, initargs=(os.getpid(),))
