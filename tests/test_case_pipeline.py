"""The case pipeline shared by synth_predict and synth_segment (synthunet/inference/pipeline.py): job order,
bounded look-ahead and export queue, in-process preprocessing for the jobs that need it."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from synthunet.inference.pipeline import run_case_pipeline


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def test_cases_go_through_in_order_with_bounded_queues():
    events: list[tuple[str, int]] = []

    def submit_preprocessing(job: int):
        events.append(("read", job))
        return None if job == 2 else _done((np.full(3, job), {"case": job}, None))

    def preprocess_here(job: int):
        events.append(("here", job))
        return np.full(3, job), {"case": job}, None

    def predict(job: int, data, properties):
        assert properties["case"] == job and data[0] == job
        # the look-ahead: never more than 3 cases (2 workers + 1) read beyond the one being predicted
        assert max(j for kind, j in events if kind == "read") <= job + 3
        events.append(("predict", job))
        return data * 10

    def submit_export(job: int, prediction, properties, geometry):
        return _done(Path(f"case_{job}.nii.gz"))

    written = run_case_pipeline(list(range(6)), submit_preprocessing=submit_preprocessing, predict=predict,
                                submit_export=submit_export, num_processes_preprocessing=2, num_processes_export=1,
                                preprocess_here=preprocess_here, progress=False)
    assert written == [Path(f"case_{j}.nii.gz") for j in range(6)]
    assert [j for kind, j in events if kind == "predict"] == list(range(6))
    assert ("here", 2) in events and [j for kind, j in events if kind == "here"] == [2]


def test_a_job_without_a_future_needs_in_process_preprocessing():
    with pytest.raises(ValueError, match="case 0: no future"):
        run_case_pipeline([0], submit_preprocessing=lambda job: None, predict=lambda *a: None,
                          submit_export=lambda *a: _done(None), num_processes_preprocessing=0,
                          num_processes_export=0, progress=False,
                          describe=lambda job: f"case {job}")


def test_worker_pools_run_the_stages():
    with ThreadPoolExecutor(2) as pool:
        written = run_case_pipeline(
            ["a", "b", "c"], submit_preprocessing=lambda job: pool.submit(lambda: (np.ones(2), {"id": job}, None)),
            predict=lambda job, data, properties: properties["id"].upper(),
            submit_export=lambda job, prediction, properties, geometry: pool.submit(lambda: prediction),
            num_processes_preprocessing=1, num_processes_export=0, progress=False)
    assert written == ["A", "B", "C"]
