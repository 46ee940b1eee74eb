"""Running one function over many cases, in a process pool (``-np``) with a tqdm progress bar."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm import tqdm


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

    Workers are started with ``spawn`` so that no lock or thread state of the parent is inherited.
    """
    bar = tqdm(total=len(tasks), desc=description, disable=not progress)
    try:
        if num_processes <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield function(task)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(num_processes, len(tasks)), initializer=_initialise_worker) as pool:
            for result in pool.imap_unordered(function, tasks):
                yield result
                bar.update()
    finally:
        bar.close()
