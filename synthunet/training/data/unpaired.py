"""Unpaired training batches (seed 003): source patches (domain A) and target patches (domain B) from
DIFFERENT cases.

Each batch, the training cases are shuffled (NumPy's global random state) and split into two disjoint
halves; the source stream draws its ``batch_size`` patches from the first half, the target stream from the
second. Each stream is an ordinary :class:`~synthunet.training.data.loader.TrainingBatches` over its own
:class:`~synthunet.training.data.sampling.PatchSampler` (own random centres, slicing axes and augmentation).
Of a source patch only the input stack is kept, of a target patch only the target slice: the network
never sees a source and a target of the same case together. :func:`unpaired_batch` checks that no case id
is in both halves and raises :class:`PairedBatchError` otherwise.

A stream batch is ``{"source": ..., "target": ...}``, two ordinary not-yet-augmented batches (checked to be
unpaired in the worker); the trainer augments each on the device and combines them with
:func:`unpaired_batch` (which checks again). Batch keys then: ``a`` (B, inputs x k, *S) source stacks,
``a_seg``, ``a_case_ids``; ``b`` (B, 1, *S) target slices, ``b_seg``, ``b_case_ids``. There is no
``data``/``target`` pair on purpose.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import IterableDataset

from synthunet.errors import InputError
from synthunet.training.data.loader import TrainingBatches


class PairedBatchError(AssertionError):
    """A batch meant to be unpaired holds source and target patches of the same case."""


def check_unpaired(source_case_ids: Sequence[str], target_case_ids: Sequence[str]) -> None:
    """Raise :class:`PairedBatchError` when a case id is in both halves of a batch."""
    shared = sorted(set(source_case_ids) & set(target_case_ids))
    if shared:
        raise PairedBatchError(f"unpaired batch: case(s) {', '.join(shared)} appear in both the source and the "
                               "target half; source and target must come from different cases")


def unpaired_batch(source: dict, target: dict) -> dict:
    """Combine a source-stream batch (keep its inputs) and a target-stream batch (keep its targets)."""
    check_unpaired(source["case_ids"], target["case_ids"])
    return {"a": source["data"], "a_seg": source["seg"], "a_case_ids": list(source["case_ids"]),
            "b": target["target"], "b_seg": target["seg"], "b_case_ids": list(target["case_ids"])}


def _check_enough_cases(case_ids: Sequence[str]) -> list[str]:
    cases = sorted(set(case_ids))
    if len(cases) < 2:
        raise InputError(f"unpaired training needs at least 2 training cases, got {len(cases)}")
    return cases


def split_cases(case_ids: Sequence[str], rng=np.random) -> tuple[list[str], list[str]]:
    """Shuffle ``case_ids`` and split them into two disjoint, non-empty halves (source, target)."""
    cases = _check_enough_cases(case_ids)
    order = [cases[i] for i in rng.permutation(len(cases))]
    half = len(order) // 2
    return order[:half], order[half:]


class UnpairedTrainingBatches(IterableDataset):
    """An endless stream of unpaired batches from two independent streams over the training cases."""

    def __init__(self, source: TrainingBatches, target: TrainingBatches) -> None:
        super().__init__()
        if set(source.sampler.case_ids) != set(target.sampler.case_ids):
            raise ValueError("the source and target streams must sample the same training cases")
        self.source, self.target = source, target
        _check_enough_cases(source.sampler.case_ids)  # fail now, not in a worker

    def next_batch(self) -> dict:
        """``{"source": batch, "target": batch}`` from two disjoint halves of the training cases (not augmented)."""
        source_cases, target_cases = split_cases(self.source.sampler.case_ids)
        source, target = self.source.next_batch(source_cases), self.target.next_batch(target_cases)
        check_unpaired(source["case_ids"], target["case_ids"])
        return {"source": source, "target": target}

    def __iter__(self) -> Iterator[dict]:
        while True:
            yield self.next_batch()
