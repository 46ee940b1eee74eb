"""Training data of a tumour segmenter: every input channel in ``data``, the label map in ``seg``.

The synthesis pipeline carries an image target as the last ``data`` channel. A segmenter has no image
target: its target is the segmentation that the pipeline already moves along (nearest-neighbour
interpolation in the spatial transforms, -1 beyond the volume). So samples read only the inputs; training
batches are ordinary :class:`TrainingBatches`, augmented by a ``BatchAugmenter(has_target=False)``:
spatial (data and seg together) -> intensity (inputs) -> zero outside the brain. 3D only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from synthunet.training.data.loader import ValidationPatches
from synthunet.training.data.sampling import SEG_OUTSIDE, PatchSampler, PatchSpec, read_region

#: ``target_index`` given to :class:`PatchSampler`, which segmentation samples never read
NO_IMAGE_TARGET = -1


class SegmentationPatchSampler(PatchSampler):
    """3D patches of the input channels and the label map (no image target)."""

    def __init__(self, cases, case_ids: Sequence[str], input_indices: Sequence[int], patch_size: Sequence[int],
                 oversample_tumour: float = 0.33) -> None:
        if len(patch_size) != 3:
            raise ValueError(f"segmentation sampling is 3D; got patch size {tuple(patch_size)}")
        super().__init__(cases, case_ids, input_indices, NO_IMAGE_TARGET, patch_size, oversample_tumour)

    def extract(self, spec: PatchSpec, size: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(data ``(len(inputs), *S)``, seg ``(1, *S)``) of one sample; 0 / -1 beyond the volume."""
        size = tuple(size or self.patch_size)
        data, seg, _ = self.cases.get(spec.case_id)
        lower = [c - s // 2 for c, s in zip(spec.center, size)]
        return (read_region(data, self.input_indices, lower, size, 0.0),
                read_region(seg, [0], lower, size, SEG_OUTSIDE, dtype=np.int8))


class SegmentationValidationPatches(ValidationPatches):
    """The fixed validation patches of a segmenter, no augmentation (``data`` and ``seg``, no target)."""

    def __init__(self, sampler: SegmentationPatchSampler, batch_size: int, num_batches: int, seed: int) -> None:
        super().__init__(sampler, batch_size, num_batches, seed, has_target=False)
