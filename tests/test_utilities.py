"""The lowest layer's helpers: run_parallel (order, errors naming the item), the thread/worker rule and
link_or_copy."""
from __future__ import annotations

import os
import time

import pytest

from synthunet.errors import CaseError, InputError
from synthunet.utilities.files import link_or_copy
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


def test_link_or_copy_links_on_one_file_system_and_copies_where_it_cannot(tmp_path, monkeypatch):
    source = tmp_path / "a.nii.gz"
    source.write_bytes(b"volume")
    link_or_copy(source, tmp_path / "linked.nii.gz")
    assert os.path.samefile(source, tmp_path / "linked.nii.gz")

    def refuse(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    link_or_copy(source, tmp_path / "copied.nii.gz")
    assert (tmp_path / "copied.nii.gz").read_bytes() == b"volume"
    assert not os.path.samefile(source, tmp_path / "copied.nii.gz")
