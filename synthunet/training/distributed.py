"""Multi-process training with PyTorch DistributedDataParallel.

``synth_train ... --num_gpus N`` spawns N processes with ``torch.multiprocessing`` (one per GPU, NCCL);
with ``--device cpu`` the processes use the gloo backend (that is how the tests run DDP). Rank 0 writes
every file; all ranks train on their own random patches (``batch_size / N`` each) and DDP averages the
gradients, so the weights stay identical on every rank.
"""
from __future__ import annotations

import os
import socket
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from synthunet.errors import InputError


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(module)`` on ``device``."""
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def barrier(world_size: int) -> None:
    if world_size > 1 and is_active():
        dist.barrier()


def mean_across_ranks(value: torch.Tensor | float, world_size: int) -> torch.Tensor | float:
    """Average a scalar over all ranks (identity in a single process)."""
    if world_size <= 1 or not is_active():
        return value
    tensor = torch.as_tensor(value, dtype=torch.float64).clone()
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return (tensor / world_size).cpu()


def free_port() -> int:
    """A free TCP port on this machine for the process group rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as handle:
        handle.bind(("127.0.0.1", 0))
        return int(handle.getsockname()[1])


def _worker(rank: int, world_size: int, port: int, base_seed: int, device_type: str, function: Callable,
            kwargs: dict) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        if device_type == "cuda":
            torch.cuda.set_device(rank)
            device = torch.device("cuda", rank)
        else:
            device = torch.device(device_type)
            torch.set_num_threads(max(1, torch.get_num_threads() // world_size))
        torch.manual_seed(base_seed + rank)
        np.random.seed((base_seed + rank) % 2 ** 32)
        import random

        random.seed(base_seed + rank)
        function(device=device, rank=rank, world_size=world_size, **kwargs)
    finally:
        dist.destroy_process_group()


def launch(function: Callable, world_size: int, device_type: str, seed: int | None = None, **kwargs) -> None:
    """Run ``function(device=..., rank=..., world_size=..., **kwargs)`` in ``world_size`` spawned processes.

    ``function`` and ``kwargs`` must be picklable (a module-level function and plain values).
    """
    if device_type == "cuda" and torch.cuda.device_count() < world_size:
        raise InputError(f"--num_gpus {world_size} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device_type not in ("cuda", "cpu"):
        raise InputError(f"Multi-process training supports cuda (NCCL) and cpu (gloo), not {device_type}")
    base_seed = int(np.random.SeedSequence(seed).generate_state(1)[0]) % 2 ** 31
    mp.spawn(_worker, args=(world_size, free_port(), base_seed, device_type, function, kwargs), nprocs=world_size,
             join=True)
