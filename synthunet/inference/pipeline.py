"""The case pipeline that ``synth_predict`` and ``synth_segment`` share: cases are read and preprocessed ahead in
background processes, the networks run in this process one case at a time, and exports are written in background
processes with a bounded queue, so a folder of cases keeps the CPU (or GPU) busy without holding every case in
memory. What a case is, how it is predicted and how it is written are the caller's.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
from tqdm import tqdm

from synthunet.dataset.image_io import Geometry

Job = TypeVar("Job")
Prepared = tuple[np.ndarray, dict, Geometry]


def run_case_pipeline(jobs: Sequence[Job], *, submit_preprocessing: Callable[[Job], "Future | None"],
                      predict: Callable[[Job, np.ndarray, dict], Any],
                      submit_export: Callable[[Job, Any, dict, Geometry], Future], num_processes_preprocessing: int,
                      num_processes_export: int, preprocess_here: Callable[[Job], Prepared] | None = None,
                      progress: bool = True, describe: Callable[[Job], str] = str) -> list[Path]:
    """Run every job through preprocess -> predict -> export; return the exported files in job order.

    ``submit_preprocessing(job)``: a future of ``(data, properties, geometry)`` from a worker pool, or None to
    preprocess that job here with ``preprocess_here`` (e.g. a cascade, which needs this process's networks).
    One job more than there are preprocessing workers is preprocessed ahead (so a worker is never idle); at most
    two exports per export worker are pending before the next network call waits for the oldest (``0`` workers:
    the pools run in this process, see :func:`synthunet.inference.workers.make_executor`). ``describe(job)`` is
    shown beside the progress bar.
    """
    lookahead = max(num_processes_preprocessing, 0) + 1
    export_slots = max(num_processes_export, 1) * 2
    written: list[Path] = []
    queued: deque[tuple[Job, Future | None]] = deque()
    pending: deque[Future] = deque()
    upcoming = iter(jobs)

    def submit_next() -> None:
        job = next(upcoming, None)
        if job is not None:
            queued.append((job, submit_preprocessing(job)))

    for _ in range(lookahead):
        submit_next()
    with tqdm(total=len(jobs), desc="cases", unit="case", disable=not progress) as bar:
        while queued:
            job, future = queued.popleft()
            if future is None and preprocess_here is None:
                raise ValueError(f"{describe(job)}: no future and no in-process preprocessing")
            data, properties, geometry = preprocess_here(job) if future is None else future.result()
            submit_next()
            bar.set_postfix_str(describe(job))
            prediction = predict(job, data, properties)
            while len(pending) >= export_slots:
                written.append(pending.popleft().result())
            pending.append(submit_export(job, prediction, properties, geometry))
            bar.update(1)
        while pending:
            written.append(pending.popleft().result())
    return written
