"""``synth_predict -num_parts N -part_id K``: a deterministic share of an input folder's cases.

As in nnU-Net (``list[part_id::num_parts]``): the case ids are sorted, and case ``i`` of that list goes to part
``i % N``. Parts are disjoint and together cover every case, so ``N`` runs (on ``N`` GPUs or machines) with
``K = 0 .. N-1`` and the same output folder write exactly what one run writes.
"""
from __future__ import annotations

from typing import Iterable

from synthunet.errors import InputError


def check_part(num_parts: int, part_id: int) -> None:
    """Raise :class:`InputError` unless ``num_parts >= 1`` and ``0 <= part_id < num_parts``."""
    if num_parts < 1:
        raise InputError(f"-num_parts must be at least 1, got {num_parts}")
    if not 0 <= part_id < num_parts:
        raise InputError(f"-part_id must be between 0 and -num_parts - 1 = {num_parts - 1}, got {part_id} "
                         f"(parts are numbered from 0)")


def select_part(case_ids: Iterable[str], num_parts: int, part_id: int) -> list[str]:
    """The case ids of part ``part_id`` of ``num_parts``: ``sorted(case_ids)[part_id::num_parts]``."""
    check_part(num_parts, part_id)
    return sorted(set(case_ids))[part_id::num_parts]
