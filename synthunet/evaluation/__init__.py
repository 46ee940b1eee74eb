"""Evaluation of synthetic MRI: metrics per region, folder evaluation, cross-validation tables, visual reports.

Public API (importing it has no side effects)::

    from synthunet.evaluation import evaluate_case, evaluate_folders, accumulate_folds
    from synthunet.evaluation.ssim import ssim, ssim_map, psnr      # torch, differentiable (training)

See documentation/evaluation.md.
"""
from synthunet.evaluation.crossval import accumulate_crossval, accumulate_folds
from synthunet.evaluation.evaluate import evaluate_case_files, evaluate_folders
from synthunet.evaluation.layout import CaseFiles, match_folders
from synthunet.evaluation.metrics import (METRICS, NORMALISATIONS, PSNR_CAP_DB, EvaluationError, brats_region_dice,
                                          default_brain_mask, evaluate_case, percentile_normalise)

__all__ = ["evaluate_case", "evaluate_folders", "evaluate_case_files", "accumulate_folds", "accumulate_crossval",
           "match_folders", "CaseFiles", "EvaluationError", "METRICS", "NORMALISATIONS", "PSNR_CAP_DB",
           "brats_region_dice", "default_brain_mask", "percentile_normalise"]
