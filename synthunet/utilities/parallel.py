"""Running one function over many cases, in worker processes (``-np``) with a tqdm progress bar."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from synthunet.errors import SynthUNetError


def _initialise_worker() -> None:
    """Workers are processes already; keep blosc2 from starting threads of its own in each."""
    try:
        import blosc2

        blosc2.set_nthreads(1)
    except ImportError:  # pragma: no cover - blosc2 ships with acvl-utils
        pass


def run_parallel(function: Callable[[Any], Any], tasks: Sequence[Any], num_processes: int, progress: bool = True,
                 description: str = "") -> Iterator[Any]:
    """Yield ``function(task)`` for every task (completion order); ``num_processes <= 1`` runs in this process.

    Workers are started with ``spawn`` (no lock or thread state of the parent is inherited); a worker
    that dies (e.g. killed for memory) raises an error instead of hanging.
    """
    bar = tqdm(total=len(tasks), desc=description, disable=not progress)
    try:
        if num_processes <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield function(task)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(num_processes, len(tasks)), mp_context=context,
                                 initializer=_initialise_worker) as pool:
            futures = [pool.submit(function, task) for task in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
                    bar.update()
            except BrokenProcessPool as error:
                raise SynthUNetError("A worker process died (out of memory? started from a script without a "
                                     "file, e.g. piped to python?); try -np 1 or fewer processes") from error
            finally:
                for future in futures:
                    future.cancel()
    finally:
        bar.close()
