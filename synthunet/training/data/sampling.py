"""Patch sampling from preprocessed cases: read only the patch, pad beyond the volume, 2.5D stacks.

A sample is described by a :class:`PatchSpec` (case, centre voxel, slicing axis for 2.5D) and turned
into arrays by :meth:`PatchSampler.extract`. Random specs come from :meth:`PatchSampler.random_spec`,
which draws from NumPy's global random state (so a run with 0 data workers is reproducible from the
RNG states stored in a checkpoint; each worker process seeds its own).

Array layout of one extracted sample (``S`` = the requested spatial size):

* 3D: ``data`` = ``(len(inputs) + 1, *S)`` with the target as the LAST channel, ``seg`` = ``(1, *S)``.
* 2.5D along axis ``a``: ``data`` = ``(len(inputs) * k + 1, S0, S1)``, channel ``i * k + j`` is input ``i``
  at slice offset ``j - k // 2`` (documentation/model_folder_format.md), the last channel is the target's
  central slice; ``seg`` = the central slice of the segmentation. The two in-plane axes are the volume
  axes other than ``a``, in their original order.

Voxels beyond the volume are 0 in ``data`` and -1 (outside the brain) in ``seg``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

SEG_OUTSIDE = -1
MAX_TUMOUR_LOCATIONS = 5000


@dataclass(frozen=True)
class PatchSpec:
    """Where to take one sample: case, centre voxel (z, y, x) and, for 2.5D, the slicing axis."""

    case_id: str
    center: tuple[int, int, int]
    axis: int | None = None


def default_case_loader() -> Callable:
    """``synthunet.preprocessing.load_case`` (imported lazily)."""
    from synthunet.preprocessing import load_case

    return load_case


def read_region(array, channels: Sequence[int], lower: Sequence[int], size: Sequence[int],
                fill: float, dtype=np.float32) -> np.ndarray:
    """Read ``array[channels, lower:lower+size]`` of a ``(C, z, y, x)`` array-like, padding outside with ``fill``.

    Only the part inside the volume is sliced from ``array`` (so a memory-mapped or blosc2 array reads
    just the patch); channels are read one at a time with integer indexing.
    """
    shape = array.shape[1:]
    out = np.full((len(channels), *size), fill, dtype=dtype)
    src, dst = [], []
    for lo, n, extent in zip(lower, size, shape):
        a, b = max(lo, 0), min(lo + n, extent)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    for k, channel in enumerate(channels):
        out[(k, *dst)] = np.asarray(array[(int(channel), *src)])
    return out


class CaseCache:
    """Opens preprocessed cases on demand (memory-mapped), keeps the most recent ones open, and
    remembers a random subset of each case's tumour voxel positions."""

    def __init__(self, folder: Path | str, loader: Callable | None = None, max_open: int = 32) -> None:
        self.folder = Path(folder)
        self.loader = loader
        self.max_open = max_open
        self._open: OrderedDict[str, tuple] = OrderedDict()
        self._tumour: dict[str, np.ndarray] = {}

    def get(self, case_id: str) -> tuple:
        """(data, seg, properties) of a case; data and seg are array-likes, sliced lazily."""
        if case_id in self._open:
            self._open.move_to_end(case_id)
            return self._open[case_id]
        loader = self.loader or default_case_loader()
        entry = loader(self.folder, case_id, mmap=True)
        self._open[case_id] = entry
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return entry

    def tumour_locations(self, case_id: str) -> np.ndarray:
        """``(N, 3)`` int array of tumour voxels (seg > 0).

        Taken from the properties' ``class_locations`` (written by preprocessing) when present, else found
        in the segmentation once and subsampled to at most :data:`MAX_TUMOUR_LOCATIONS` (fixed subset).
        """
        if case_id not in self._tumour:
            _, seg, properties = self.get(case_id)
            stored = properties.get("class_locations") if isinstance(properties, dict) else None
            if stored is not None:
                lists = [np.asarray(v, dtype=np.int32).reshape(-1, 3) for v in stored.values() if len(v)]
                locations = np.concatenate(lists) if lists else np.zeros((0, 3), dtype=np.int32)
            else:
                locations = np.argwhere(np.asarray(seg[0]) > 0)
                if len(locations) > MAX_TUMOUR_LOCATIONS:
                    chosen = np.random.RandomState(len(locations)).choice(len(locations), MAX_TUMOUR_LOCATIONS,
                                                                          replace=False)
                    locations = locations[np.sort(chosen)]
            self._tumour[case_id] = locations.astype(np.int32)
        return self._tumour[case_id]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # file handles do not travel to worker processes
        return state


class PatchSampler:
    """Draws patch specs and extracts samples for one configuration.

    ``patch_size``: 3 entries (3D) or 2 entries (2.5D in-plane size). Training reads larger samples (room for
    the drawn rotation/scaling, :func:`~synthunet.training.data.augmentation.read_size`), validation the patch.
    """

    def __init__(self, cases: CaseCache, case_ids: Sequence[str], input_indices: Sequence[int], target_index: int,
                 patch_size: Sequence[int], oversample_tumour: float = 0.33, num_slices: int = 1,
                 slicing_axes: Sequence[int] | None = None) -> None:
        if not case_ids:
            raise ValueError("PatchSampler needs at least one case")
        self.cases = cases
        self.case_ids = list(case_ids)
        self.input_indices = [int(i) for i in input_indices]
        self.target_index = int(target_index)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.oversample_tumour = float(oversample_tumour)
        self.num_slices = int(num_slices)
        self.slicing_axes = [int(a) for a in slicing_axes] if slicing_axes is not None else None
        self.is_2p5d = len(self.patch_size) == 2
        if self.is_2p5d and not self.slicing_axes:
            raise ValueError("2.5D sampling needs slicing_axes")
        if self.is_2p5d and self.num_slices % 2 != 1:
            raise ValueError(f"num_slices must be odd (a central slice plus neighbours), got {self.num_slices}")

    # ---- choosing where -------------------------------------------------------------------------
    def random_spec(self, rng=np.random, case_ids: Sequence[str] | None = None) -> PatchSpec:
        """A random sample; with probability ``oversample_tumour`` centred on a tumour voxel (if the case has any).
        ``case_ids``: draw the case from these instead of all of the sampler's cases (unpaired batches)."""
        pool = self.case_ids if case_ids is None else list(case_ids)
        case_id = pool[rng.randint(len(pool))]
        axis = self.slicing_axes[rng.randint(len(self.slicing_axes))] if self.is_2p5d else None
        center = None
        if self.oversample_tumour > 0 and rng.uniform() < self.oversample_tumour:
            locations = self.cases.tumour_locations(case_id)
            if len(locations):
                center = tuple(int(v) for v in locations[rng.randint(len(locations))])
        if center is None:
            shape = self.cases.get(case_id)[0].shape[1:]
            center = tuple(int(rng.randint(s)) for s in shape)
        return PatchSpec(case_id, center, axis)

    def fixed_specs(self, count: int, seed: int) -> list[PatchSpec]:
        """``count`` specs drawn with a private seeded generator (e.g. a fixed validation set)."""
        rng = np.random.RandomState(seed)
        return [self.random_spec(rng) for _ in range(count)]

    # ---- reading -------------------------------------------------------------------------------
    def extract(self, spec: PatchSpec, size: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(data, seg) arrays of one sample (layout in the module docstring); ``size`` defaults to ``patch_size``."""
        size = tuple(size or self.patch_size)
        data, seg, _ = self.cases.get(spec.case_id)
        channels = self.input_indices + [self.target_index]
        if not self.is_2p5d:
            lower = [c - s // 2 for c, s in zip(spec.center, size)]
            return (read_region(data, channels, lower, size, 0.0),
                    read_region(seg, [0], lower, size, SEG_OUTSIDE, dtype=np.int8))
        return self._extract_stack(data, seg, spec, size, channels)

    def _extract_stack(self, data, seg, spec: PatchSpec, size: Sequence[int], channels: list[int]):
        k, axis = self.num_slices, spec.axis
        in_plane = [a for a in range(3) if a != axis]
        lower, block = [0, 0, 0], [0, 0, 0]
        lower[axis], block[axis] = spec.center[axis] - k // 2, k
        for a, s in zip(in_plane, size):
            lower[a], block[a] = spec.center[a] - s // 2, s
        region = read_region(data, channels, lower, block, 0.0)          # (C, z, y, x) block
        region = np.moveaxis(region, axis + 1, 1)                        # (C, k, S0, S1)
        n_in = len(self.input_indices)
        stack = region[:n_in].reshape(n_in * k, *size)                   # channel i * k + j
        target = region[n_in:, k // 2]                                   # (1, S0, S1)
        seg_lower, seg_block = list(lower), list(block)
        seg_lower[axis], seg_block[axis] = spec.center[axis], 1
        seg_slice = np.moveaxis(read_region(seg, [0], seg_lower, seg_block, SEG_OUTSIDE, dtype=np.int8), axis + 1, 1)[:, 0]
        return np.concatenate([stack, target], axis=0), seg_slice

    def batch(self, specs: Sequence[PatchSpec], size: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Stack several samples: ``{"data": (B, C_in [+1 target], *S), "seg": (B, 1, *S)}``."""
        samples = [self.extract(spec, size) for spec in specs]
        return {"data": np.stack([s[0] for s in samples]), "seg": np.stack([s[1] for s in samples]),
                "case_ids": [spec.case_id for spec in specs]}
