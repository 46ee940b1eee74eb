"""Nyúl & Udupa histogram standardisation (IEEE TMI 19(2), 2000), per channel.

Learning: every training case's landmarks (intensity percentiles inside the brain) are mapped linearly
so that its first landmark goes to ``s1`` and its last to ``s2`` (the standard range, ``[0, 100]``);
the standard scale is the mean of these mapped landmarks. Applying: a piecewise-linear map sends the
case's own landmarks to the standard scale; outside the outer landmarks the first / last segment is
extended linearly (as intensity-normalization 3.x's ``interp1d(fill_value="extrapolate")`` and TorchIO
do). See documentation/normalisation.md.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from synthunet.errors import SynthUNetError

DEFAULT_PERCENTILES: tuple[float, ...] = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
STANDARD_RANGE: tuple[float, float] = (0.0, 100.0)
RANGE_DIVISOR = 100.0


class NormalizationError(SynthUNetError, ValueError):
    """Landmarks cannot be computed or used (empty mask, constant image, unknown channel)."""


def nyul_landmarks(image: np.ndarray, mask: np.ndarray | None,
                   percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """Intensity percentiles (linear interpolation, float64) of ``image`` inside ``mask`` (None: all voxels)."""
    voxels = np.asarray(image)[np.asarray(mask, dtype=bool)] if mask is not None else np.asarray(image).ravel()
    if voxels.size == 0:
        raise NormalizationError("The brain mask is empty; Nyúl landmarks cannot be computed")
    return np.percentile(voxels.astype(np.float64, copy=False), np.asarray(percentiles, dtype=np.float64))


def learn_standard_scale(landmarks_per_case: Sequence[np.ndarray],
                         output_range: tuple[float, float] = STANDARD_RANGE) -> np.ndarray:
    """Mean over cases of each case's landmarks mapped linearly so first -> ``s1`` and last -> ``s2``."""
    if len(landmarks_per_case) == 0:
        raise NormalizationError("No training cases to learn a standard scale from")
    s1, s2 = (float(v) for v in output_range)
    mapped = []
    for index, landmarks in enumerate(landmarks_per_case):
        landmarks = np.asarray(landmarks, dtype=np.float64)
        low, high = landmarks[0], landmarks[-1]
        if not high > low:
            raise NormalizationError(f"Case {index}: the outer landmarks are equal ({low}); "
                                     f"the image is constant inside the brain")
        mapped.append(s1 + (landmarks - low) * (s2 - s1) / (high - low))
    return np.mean(mapped, axis=0)


def _end_slopes(xp: np.ndarray, fp: np.ndarray) -> tuple[float, float]:
    """Slopes of the first and last segments; a zero-width end segment uses the overall slope."""
    overall = (fp[-1] - fp[0]) / (xp[-1] - xp[0])
    low = (fp[1] - fp[0]) / (xp[1] - xp[0]) if xp[1] > xp[0] else overall
    high = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2]) if xp[-1] > xp[-2] else overall
    return low, high


def piecewise_linear(values: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear map through (xp, fp) with the first / last segment extended linearly (float64)."""
    xp = np.asarray(xp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    if xp.shape != fp.shape or xp.ndim != 1 or xp.size < 2:
        raise NormalizationError(f"Need two matching 1D landmark lists of length >= 2, got {xp.shape} and {fp.shape}")
    if np.any(np.diff(xp) < 0) or not xp[-1] > xp[0]:
        raise NormalizationError(f"Landmarks must be non-decreasing and not all equal: {xp.tolist()}")
    values = np.asarray(values, dtype=np.float64)
    result = np.interp(values, xp, fp)
    slope_low, slope_high = _end_slopes(xp, fp)
    below = values < xp[0]
    above = values > xp[-1]
    result[below] = fp[0] + (values[below] - xp[0]) * slope_low
    result[above] = fp[-1] + (values[above] - xp[-1]) * slope_high
    return result


def apply_nyul(image: np.ndarray, mask: np.ndarray | None, landmarks_of_image: np.ndarray,
               standard_scale: np.ndarray) -> np.ndarray:
    """Map ``image`` to the standard scale (float32); voxels outside ``mask`` become 0 (None: map all)."""
    result = piecewise_linear(image, landmarks_of_image, standard_scale).astype(np.float32)
    if mask is not None:
        result[~np.asarray(mask, dtype=bool)] = 0
    return result


def invert_nyul(values: np.ndarray, standard_scale: np.ndarray, reference_landmarks: np.ndarray,
                clamp_min: float | None = 0.0) -> np.ndarray:
    """Standard-scale values -> raw units of a case whose landmarks are ``reference_landmarks`` (float32).

    The result is clamped to ``>= clamp_min`` (None: no clamping).
    """
    result = piecewise_linear(values, standard_scale, reference_landmarks)
    if clamp_min is not None:
        np.maximum(result, clamp_min, out=result)
    return result.astype(np.float32)


def _percentile_indices(available: Sequence[float], wanted: Sequence[float]) -> list[int]:
    indices = []
    for percentile in wanted:
        hits = np.flatnonzero(np.isclose(np.asarray(available, dtype=float), float(percentile)))
        if hits.size == 0:
            raise NormalizationError(f"Landmark percentile {percentile} is not in the fingerprint (it has "
                                     f"{list(available)}); re-run synth_extract_fingerprint with it")
        indices.append(int(hits[0]))
    return indices


def normalization_plans_entry(fingerprint: Mapping, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict:
    """The ``"normalization"`` block of plans.json, learned from the fingerprint's per-case landmarks."""
    percentiles = [float(p) for p in percentiles]
    if sorted(percentiles) != percentiles or len(set(percentiles)) != len(percentiles) or len(percentiles) < 2:
        raise NormalizationError(f"Landmark percentiles must be strictly increasing, got {percentiles}")
    indices = _percentile_indices(fingerprint["landmark_percentiles"], percentiles)
    channels = [fingerprint["channel_names"][k] for k in sorted(fingerprint["channel_names"], key=int)]
    standard_scales: dict[str, list[float]] = {}
    reference_landmarks: dict[str, list[float]] = {}
    for channel in channels:
        per_case = fingerprint["landmarks"].get(channel, {})
        if not per_case:
            raise NormalizationError(f"No training case has channel {channel}; cannot learn its standard scale")
        landmarks = [np.asarray(values, dtype=np.float64)[indices] for values in per_case.values()]
        standard_scales[channel] = [float(v) for v in learn_standard_scale(landmarks, STANDARD_RANGE)]
        reference_landmarks[channel] = [float(v) for v in np.mean(landmarks, axis=0)]
    return {
        "scheme": "nyul",
        "landmark_percentiles": [int(p) if float(p).is_integer() else p for p in percentiles],
        "standard_scale_range": [int(v) if float(v).is_integer() else v for v in STANDARD_RANGE],
        "range_divisor": float(RANGE_DIVISOR),
        "standard_scales": standard_scales,
        "reference_landmarks": reference_landmarks,
    }


def _check_block(block: Mapping) -> None:
    if block.get("scheme") != "nyul":
        raise NormalizationError(f"Unknown normalization scheme {block.get('scheme')!r}; only 'nyul' is supported")


def normalize_case_with_landmarks(data: np.ndarray, brain_mask: np.ndarray, normalization_block: Mapping,
                                  channel_names: Sequence[str]) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Like :func:`normalize_case`, also returning each channel's own landmarks."""
    _check_block(normalization_block)
    if data.shape[0] != len(channel_names):
        raise NormalizationError(f"{data.shape[0]} channels in the data but {len(channel_names)} channel names")
    mask = np.asarray(brain_mask, dtype=bool)
    percentiles = normalization_block["landmark_percentiles"]
    divisor = float(normalization_block["range_divisor"])
    output = np.zeros(data.shape, dtype=np.float32)
    landmarks: dict[str, list[float]] = {}
    for index, channel in enumerate(channel_names):
        if channel not in normalization_block["standard_scales"]:
            raise NormalizationError(f"Channel {channel!r} has no standard scale in the plans "
                                     f"(it has {sorted(normalization_block['standard_scales'])})")
        own = nyul_landmarks(data[index], mask, percentiles)
        if not own[-1] > own[0]:
            raise NormalizationError(f"Channel {channel} is constant inside the brain; it cannot be standardised")
        standardised = apply_nyul(data[index], mask, own, np.asarray(normalization_block["standard_scales"][channel]))
        output[index] = standardised / divisor
        landmarks[channel] = [float(v) for v in own]
    return output, landmarks


def normalize_case(data: np.ndarray, brain_mask: np.ndarray, normalization_block: Mapping,
                   channel_names: Sequence[str]) -> np.ndarray:
    """Nyúl-standardise every channel of ``data`` (C, z, y, x) with its own landmarks, divide by
    ``range_divisor`` and set voxels outside ``brain_mask`` to 0; float32."""
    return normalize_case_with_landmarks(data, brain_mask, normalization_block, channel_names)[0]


def denormalize_target(prediction: np.ndarray, normalization_block: Mapping, channel_name: str,
                       landmarks: Sequence[float] | None = None) -> np.ndarray:
    """Preprocessed-scale prediction -> raw units, >= 0: of a typical training case (the plans' reference
    landmarks), or of the case whose own ``landmarks`` are given (a same-sequence task: super-resolution)."""
    _check_block(normalization_block)
    if landmarks is None and channel_name not in normalization_block["reference_landmarks"]:
        raise NormalizationError(f"Channel {channel_name!r} has no reference landmarks in the plans")
    values = np.asarray(prediction, dtype=np.float64) * float(normalization_block["range_divisor"])
    target_landmarks = normalization_block["reference_landmarks"][channel_name] if landmarks is None else landmarks
    return invert_nyul(values, np.asarray(normalization_block["standard_scales"][channel_name]),
                       np.asarray(target_landmarks, dtype=np.float64), clamp_min=0.0)
