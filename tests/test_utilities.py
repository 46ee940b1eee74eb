"""The lowest layer's helpers: run_parallel (order, errors naming the item) and the thread/worker rule."""
from __future__ import annotations

import time

import pytest

from synthunet.errors import CaseError, InputError
from synthunet.utilities.parallel import run_parallel
from synthunet.utilities.threads import default_num_workers, training_threads


@pytest.mark.parametrize("num_processes", [1, 2])
def test_run_parallel_keeps_the_order_and_names_the_item_that_failed(num_processes):
    assert list(run_parallel(int, ["3", "1", "2"], num_processes, progress=False)) == [3, 1, 2]
    with pytest.raises(ValueError) as caught:
        list(run_parallel(int, ["1", "x"], num_processes, progress=False, description="reading", name=str))
    assert "(while processing case x (reading))" in caught.value.__notes__


def _sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_run_parallel_yields_in_item_order_when_later_items_finish_first():
    assert list(run_parallel(_sleep_then_return, [1.0, 0.0, 0.0, 0.0], 2, progress=False)) == [1.0, 0.0, 0.0, 0.0]


def test_run_parallel_names_the_case_of_a_project_error():
    def fail(item: str) -> None:
        raise InputError(f"{item} is broken")

    with pytest.raises(CaseError, match=r"^Case c1 \(reading\): c1 is broken$"):
        list(run_parallel(fail, ["c1"], 1, progress=False, description="reading", name=str))


@pytest.mark.parametrize("name, value", [("SYNTHUNET_NUM_WORKERS", "-1"), ("SYNTHUNET_NUM_WORKERS", "two"),
                                         ("SYNTHUNET_NUM_THREADS", "0"), ("SYNTHUNET_NUM_THREADS", "1.5")])
def test_invalid_thread_settings_name_the_variable_and_the_value(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=f"{name} must be .* integer, got '{value}'"):
        default_num_workers() if name.endswith("WORKERS") else training_threads(1)


def test_thread_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    monkeypatch.setenv("SYNTHUNET_NUM_THREADS", "3")
    assert default_num_workers(world_size=4) == 0 and training_threads() == 3
