"""How many data workers and torch threads training uses, and one thread for worker processes.

One rule for the trainer, its data loader and the planner's CPU probe: ``$SYNTHUNET_NUM_WORKERS`` data workers,
else half the cores (1-8) shared by the DDP processes; ``$SYNTHUNET_NUM_THREADS`` torch threads, else the cores
the data workers leave free (never more than torch's current setting: oversubscribed cores make torch's CPU
kernels many times slower, measured 3x-60x on a shared 2-core machine). An invalid value raises an
:class:`~synthunet.errors.InputError` naming the variable and the value.
"""
from __future__ import annotations

import os
import sys

from synthunet import env
from synthunet.errors import InputError


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _setting(name: str, minimum: int) -> int | None:
    """The whole number in environment variable ``name`` (None when unset), at least ``minimum``."""
    value = env.get(name)
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) < minimum:
        kind = "a positive" if minimum > 0 else "a non-negative"
        raise InputError(f"{name} must be {kind} integer, got {value!r}",
                         hint="documentation/for_nnunet_users.md lists synthUNet's environment variables")
    return int(value)


def default_num_workers(world_size: int = 1) -> int:
    """``$SYNTHUNET_NUM_WORKERS`` if set (0: in the training process), else half the CPU cores (at least 1,
    at most 8) shared by the ``world_size`` ranks."""
    workers = _setting(env.NUM_WORKERS, 0)
    return workers if workers is not None else max(1, min(8, available_cores() // 2) // max(1, world_size))


def training_threads(num_workers: int | None = None) -> int:
    """``$SYNTHUNET_NUM_THREADS`` if set, else the cores that ``num_workers`` data workers (default
    :func:`default_num_workers`) leave free, never more than torch's current setting."""
    threads = _setting(env.NUM_THREADS, 1)
    if threads is not None:
        return threads
    import torch

    workers = default_num_workers() if num_workers is None else num_workers
    return min(torch.get_num_threads(), max(1, available_cores() - max(0, workers)))


def configure_cpu_threads(num_workers: int) -> int:
    """Give torch :func:`training_threads` threads (CPU training beside ``num_workers`` data workers)."""
    import torch

    threads = training_threads(num_workers)
    torch.set_num_threads(threads)
    return threads


def use_one_thread() -> None:
    """One thread for torch, blosc2 and OpenMP in this (worker) process, so that workers share the cores:
    the libraries loaded already are set, those the process imports later read the environment."""
    os.environ["OMP_NUM_THREADS"] = os.environ["BLOSC_NTHREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "blosc2" in sys.modules:
        sys.modules["blosc2"].set_nthreads(1)
