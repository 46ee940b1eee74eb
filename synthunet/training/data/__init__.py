"""Training data: patch sampling (3D and 2.5D), augmentation, background loading, unpaired batches."""
from synthunet.training.data.augmentation import AugmentationParams, training_transforms, validation_transforms
from synthunet.training.data.loader import (TrainingBatches, ValidationPatches, WaitTimer, default_num_workers,
                                            training_iterator)
from synthunet.training.data.sampling import CaseCache, PatchSampler, PatchSpec, augmentation_sample_size, read_region
from synthunet.training.data.unpaired import (PairedBatchError, UnpairedTrainingBatches, check_unpaired,
                                              unpaired_batch)

__all__ = ["AugmentationParams", "CaseCache", "PatchSampler", "PatchSpec", "TrainingBatches", "ValidationPatches",
           "WaitTimer", "augmentation_sample_size", "default_num_workers", "read_region", "training_iterator",
           "training_transforms", "validation_transforms", "PairedBatchError", "UnpairedTrainingBatches",
           "check_unpaired", "unpaired_batch"]
