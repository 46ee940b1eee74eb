"""Training data: patch sampling (3D and 2.5D), augmentation, background loading, unpaired batches."""
from synthunet.training.data.augmentation import AugmentationParams, BatchAugmenter, draw_augmentation, read_size
from synthunet.training.data.loader import TrainingBatches, ValidationPatches, WaitTimer, training_iterator
from synthunet.training.data.sampling import CaseCache, PatchSampler, PatchSpec, read_region
from synthunet.training.data.unpaired import (PairedBatchError, UnpairedTrainingBatches, check_unpaired,
                                              unpaired_batch)

__all__ = ["AugmentationParams", "BatchAugmenter", "CaseCache", "PatchSampler", "PatchSpec", "TrainingBatches",
           "ValidationPatches", "WaitTimer", "draw_augmentation", "read_region", "read_size",
           "training_iterator", "PairedBatchError", "UnpairedTrainingBatches", "check_unpaired", "unpaired_batch"]
