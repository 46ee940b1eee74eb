"""Running one function over many items, in worker processes (``-np``) with a tqdm progress bar.

:func:`run_parallel` is the one process-pool helper of synthUNet. Only inference's background workers
(:mod:`synthunet.inference.workers`) make a pool of their own: a long-lived executor that is handed cases
while the network predicts, with workers that end with their parent.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from tqdm import tqdm

from synthunet.errors import SynthUNetError, raise_for_case
from synthunet.utilities.threads import use_one_thread

T = TypeVar("T")
R = TypeVar("R")


def _result(run: Callable[[], R], item: T, name: Callable[[T], str] | None, description: str) -> R:
    """``run()``; an error names ``item`` (:func:`synthunet.errors.raise_for_case`) when ``name`` is given."""
    try:
        return run()
    except BrokenProcessPool as error:
        raise SynthUNetError("A worker process died (out of memory? started from a script without a file, e.g. "
                             "piped to python?); try -np 1 or fewer processes") from error
    except Exception as error:  # a user-facing problem names the item; a bug keeps its type and traceback
        if name is None:
            raise
        raise_for_case(name(item), error, description)


def run_parallel(function: Callable[[T], R], items: Sequence[T], num_processes: int, progress: bool = True,
                 description: str = "", name: Callable[[T], str] | None = None) -> Iterator[R]:
    """Yield ``function(item)`` for every item, in the order of ``items``; ``num_processes <= 1`` runs here.

    ``function`` must be a module-level function (workers receive it by name). Workers are started with
    ``spawn`` (no lock or thread state of the parent is inherited); a worker that dies (e.g. killed for
    memory) raises an error instead of hanging, and the first error stops the run. ``name(item)`` (a case
    id): an error of an item is re-raised naming it (``Case {name} ({description}): ...``); without ``name``
    the function's own errors must say which item failed. The bar (``progress``) counts finished items.
    """
    bar = tqdm(total=len(items), desc=description, disable=not progress)
    try:
        if num_processes <= 1 or len(items) <= 1:
            for item in items:
                yield _result(lambda: function(item), item, name, description)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(num_processes, len(items)), mp_context=context,
                                 initializer=use_one_thread) as pool:
            futures: dict[Future, int] = {pool.submit(function, item): index for index, item in enumerate(items)}
            finished: dict[int, R] = {}
            following = 0  # the index of the next item to yield
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    finished[index] = _result(future.result, items[index], name, description)
                    bar.update()
                    while following in finished:
                        yield finished.pop(following)
                        following += 1
            finally:
                for future in futures:
                    future.cancel()
    finally:
        bar.close()
