"""What ``synth_report`` draws for the target sequence: ground truth, prediction and |error| on the scale the
metrics compare them (:func:`synthunet.evaluation.metrics.region_normalise`).

Predictions are usually on another scale than the reference (a model predicts on the dataset's Nyúl scale,
a scanner's gain is arbitrary). With the default normalisation ``"percentile"`` the metrics rescale each
volume by its own [0.5, 99.5] brain percentiles, so the report draws both volumes, and their difference,
after that same rescaling; with ``"none"`` it draws them as given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthunet.evaluation.metrics import (DEFAULT_NORMALISATION, check_normalisation, normalisation_settings,
                                          region_normalise)

WINDOW_PERCENTILES = (0.5, 99.5)
#: the |error| colour scale spans at least this fraction of the display window, so that the small error of a
#: good prediction is not stretched to look like a large one
MIN_ERROR_SCALE = 0.1


def intensity_window(image: np.ndarray, brain: np.ndarray,
                     percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> tuple[float, float]:
    """[low, high] display window: percentiles of ``image`` inside the brain (whole image if the brain is empty)."""
    values = image[brain] if brain.any() else image.ravel()
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:
        high = low + 1.0
    return low, high


def normalisation_caption(normalisation: str = DEFAULT_NORMALISATION) -> str:
    """One sentence saying on which scale the report draws ground truth, prediction and error."""
    settings = normalisation_settings("region", normalisation)
    if settings["method"] == "none":
        return ("Region mode, normalisation 'none': ground truth and prediction drawn as given (as the metrics "
                "compare them); |error| in the images' units.")
    low, high = settings["percentiles"]
    return (f"Region mode, normalisation 'percentile': ground truth and prediction each rescaled by its own "
            f"{low:g}-{high:g} percentiles in the brain (as the metrics compare them); |error| on that scale.")


@dataclass(frozen=True)
class TargetPanels:
    """The target's volumes as drawn: ``reference`` and ``prediction`` share ``window``; ``error`` is
    ``|prediction - reference|``, drawn from 0 to ``error_max``."""

    reference: np.ndarray
    prediction: np.ndarray
    error: np.ndarray
    window: tuple[float, float]
    error_max: float
    normalisation: str


def target_panels(reference: np.ndarray, prediction: np.ndarray, brain: np.ndarray,
                  normalisation: str = DEFAULT_NORMALISATION) -> TargetPanels:
    """Ground truth, prediction and |error| normalised exactly as the region-mode metrics normalise them."""
    normalisation = check_normalisation(normalisation, "region")
    brain = np.asarray(brain) != 0
    reference = region_normalise(reference, brain, normalisation)
    prediction = region_normalise(prediction, brain, normalisation)
    error = np.abs(prediction - reference)
    low, high = intensity_window(reference, brain)
    error_max = float(np.percentile(error[brain], 99.5)) if brain.any() else float(error.max())
    error_max = max(error_max, MIN_ERROR_SCALE * (high - low))
    return TargetPanels(reference, prediction, error, (low, high), error_max, normalisation)
