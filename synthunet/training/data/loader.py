"""Batches for training (background workers) and validation (fixed patches, no augmentation).

Training batches come from a torch ``DataLoader`` over an endless :class:`TrainingBatches` stream, so
``num_workers`` processes choose, read and crop patches and draw their augmentation while the network
trains; the augmentation itself runs on the training device (:class:`~synthunet.training.data.augmentation.
BatchAugmenter`, called by the trainer after the batch is moved there). ``SYNTHUNET_NUM_WORKERS`` overrides
the default worker count (:func:`synthunet.utilities.threads.default_num_workers`); 0 means "in the main process" (used by the tests: then every random number
comes from the global NumPy state and a resumed run is bit-identical). :class:`WaitTimer` measures how
long the training loop waits for data.
"""
from __future__ import annotations

import random
import time
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from synthunet.training.data.augmentation import (AugmentationParams, BatchAugmenter, draw_augmentation,
                                                  draws_to_tensors, read_size, split_target)
from synthunet.training.data.sampling import PatchSampler, PatchSpec

class TrainingBatches(IterableDataset):
    """An endless stream of training samples with their augmentation draws.

    A batch: ``data`` (B, C [+ 1 target], *R) in ``dtype`` (float16 halves the copies to a GPU), ``seg``
    (B, 1, *R) int8, ``case_ids`` and ``augmentation`` (the draws); ``R`` is the patch size grown by what the
    drawn rotation/scaling needs (:func:`read_size`), so un-rotated batches read just the patch. With an
    ``augmenter`` (CPU training: the worker's core is as good as the trainer's, and frees it) the stream
    applies it itself and yields augmented batches.
    """

    def __init__(self, sampler: PatchSampler, batch_size: int, spatial: bool = True, intensity: bool = True,
                 augmentation_params: AugmentationParams | None = None, dtype: torch.dtype = torch.float32,
                 augmenter: BatchAugmenter | None = None) -> None:
        super().__init__()
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.spatial, self.intensity = spatial, intensity
        self.params = augmentation_params or AugmentationParams()
        self.dtype = dtype
        self.augmenter = augmenter
        self.input_channels = len(sampler.input_indices) * (sampler.num_slices if sampler.is_2p5d else 1)

    def next_batch(self, case_ids: Sequence[str] | None = None) -> dict:
        """Choose, draw and read one batch using NumPy's global random state (from ``case_ids`` only, if given)."""
        specs = [self.sampler.random_spec(case_ids=case_ids) for _ in range(self.batch_size)]
        draws = draw_augmentation(self.params, self.batch_size, len(self.sampler.patch_size), self.input_channels,
                                  self.spatial, self.intensity)
        raw = self.sampler.batch(specs, read_size(draws["affine"], draws["elastic"], self.sampler.patch_size))
        data = raw["data"].astype(np.float16) if self.dtype == torch.float16 else raw["data"]
        batch = {"data": torch.from_numpy(data), "seg": torch.from_numpy(raw["seg"]), "case_ids": raw["case_ids"],
                 "augmentation": draws_to_tensors(draws)}
        return self.augmenter(batch) if self.augmenter is not None else batch

    def __iter__(self) -> Iterator[dict]:
        while True:
            yield self.next_batch()


def _seed_worker(worker_id: int) -> None:
    """Give every worker its own NumPy/Python seed, derived from the seed torch gave it."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def _collate(batch: dict) -> dict:
    return batch


class _InProcessIterator:
    """Main-process iterator (0 workers): samples on demand, so no RNG draws happen ahead of time."""

    def __init__(self, stream: TrainingBatches) -> None:
        self.stream = stream

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self.stream.next_batch()


def training_iterator(stream: TrainingBatches, num_workers: int, pin_memory: bool = False) -> Iterator[dict]:
    """Iterator over training batches, with ``num_workers`` background processes (0 = in process)."""
    if num_workers <= 0:
        return _InProcessIterator(stream)
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers, worker_init_fn=_seed_worker,
                        collate_fn=_collate, pin_memory=pin_memory, prefetch_factor=2, persistent_workers=False)
    return iter(loader)


class ValidationPatches:
    """A fixed list of validation patches (drawn once with a private seed), no augmentation."""

    def __init__(self, sampler: PatchSampler, batch_size: int, num_batches: int, seed: int,
                 reference_channel: int | None = None, has_target: bool = True) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.specs: list[PatchSpec] = sampler.fixed_specs(self.batch_size * int(num_batches), seed)
        self.reference_channel, self.has_target = reference_channel, has_target

    def __iter__(self) -> Iterator[dict]:
        for start in range(0, len(self.specs), self.batch_size):
            chunk: Sequence[PatchSpec] = self.specs[start:start + self.batch_size]
            yield split_target(self.sampler.batch(chunk, self.sampler.patch_size), self.has_target,
                               self.reference_channel)

    def __len__(self) -> int:
        return (len(self.specs) + self.batch_size - 1) // self.batch_size


class WaitTimer:
    """Accumulates time spent waiting for batches vs. total step time (reset every epoch)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.wait = 0.0
        self.total = 0.0
        self._start = None

    def fetch(self, iterator: Iterator[dict]) -> dict:
        """``next(iterator)``, timed as waiting; also starts the step clock."""
        self._start = time.perf_counter()
        batch = next(iterator)
        self.wait += time.perf_counter() - self._start
        return batch

    def step_done(self) -> None:
        if self._start is not None:
            self.total += time.perf_counter() - self._start
            self._start = None

    @property
    def fraction(self) -> float:
        """Share of step time spent waiting for data (0 when nothing was measured)."""
        return self.wait / self.total if self.total > 0 else 0.0
