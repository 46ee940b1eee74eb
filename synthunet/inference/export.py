"""Writing a prediction (and its uncertainty) back in the input's geometry, atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from synthunet.dataset.image_io import Geometry, write_image
from synthunet.inference.case_preprocessing import CasePreprocessing


def revert_prediction(mean: np.ndarray, std: np.ndarray | None, properties: dict, preprocessing: CasePreprocessing,
                      geometry: Geometry) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocessed-scale mean (and std) ``(z', y', x')`` -> raw geometry and raw units, float32, >= 0.

    The standard deviation is carried to raw units by a forward difference through the (monotone,
    piecewise-linear) reversal: ``revert(mean + std) - revert(mean)``.
    """
    prediction = np.maximum(np.asarray(preprocessing.revert(mean, properties), dtype=np.float32), 0)
    if tuple(prediction.shape) != tuple(geometry.shape):
        raise RuntimeError(f"Reverting the preprocessing gave shape {prediction.shape}, but the input has "
                           f"{geometry.shape}")
    uncertainty = None
    if std is not None:
        upper = np.asarray(preprocessing.revert(mean + std, properties), dtype=np.float32)
        uncertainty = np.maximum(upper - prediction, 0).astype(np.float32)
    return prediction, uncertainty


def export_prediction(mean: np.ndarray, std: np.ndarray | None, properties: dict, preprocessing: CasePreprocessing,
                      geometry: Geometry, output_file: Path | str, uncertainty_file: Path | str | None = None) -> Path:
    """Revert and write a case's prediction (and uncertainty) with the input's exact geometry.

    Files are written under a temporary name and renamed, uncertainty first, so the prediction file's
    presence means the case is complete.
    """
    prediction, uncertainty = revert_prediction(mean, std, properties, preprocessing, geometry)
    if uncertainty is not None and uncertainty_file is not None:
        write_image(uncertainty, geometry, uncertainty_file)
    write_image(prediction, geometry, output_file)
    return Path(output_file)
