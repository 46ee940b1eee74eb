"""Preprocessing: crop to the brain, Nyúl + range scaling, resampling, storage (documentation/preprocessing.md)."""
from synthunet.preprocessing.dataset_preprocessing import load_case, load_plans, preprocess_dataset
from synthunet.preprocessing.inference import preprocess_case_for_inference, revert_preprocessing
from synthunet.preprocessing.nyul import (apply_nyul, denormalize_target, invert_nyul, learn_standard_scale,
                                          normalization_plans_entry, normalize_case, nyul_landmarks)

__all__ = ["apply_nyul", "denormalize_target", "invert_nyul", "learn_standard_scale", "load_case", "load_plans",
           "normalization_plans_entry", "normalize_case", "nyul_landmarks", "preprocess_case_for_inference",
           "preprocess_dataset", "revert_preprocessing"]
