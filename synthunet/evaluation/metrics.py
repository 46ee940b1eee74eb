"""Per-case image-similarity metrics in brain / tumour / healthy regions (two definitions).

``mode="region"`` (synthUNet's definition, what papers mean by "SSIM in the tumour"):
    by default (``normalisation="percentile"``) each volume, reference and prediction independently, is
    rescaled (not clipped) by its own [0.5, 99.5] percentiles computed inside the brain mask (lower bound
    raised to 0 if negative) so the bulk of the brain lies in [0, 1]: per-scan gains, which are arbitrary in multi-centre MRI and unknowable
    for a synthesised sequence, then do not count. ``normalisation="none"`` compares the images as given
    (for images already on one scale, e.g. the preprocessed, Nyúl-standardised volumes of the training
    validation). One SSIM map is computed on the whole volume and averaged inside each region. MAE, MSE, PSNR
    and NCC use the voxels of the region. Regions: ``brain`` (brain mask), ``tumour`` (labels > 0),
    ``healthy`` (brain and not tumour) and one region per tumour label present, named by the label scheme
    (:mod:`synthunet.dataset.label_scheme`: ``NCR``, ``ED``, ``ET`` wherever dataset.json's labels or
    regions say which value is which; by default the BraTS 2023 numbering 1 NCR, 2 ED, 3 ET).

``mode="brasyn"`` (the BraSyn challenge organisers' scoring):
    each volume is clipped to its own [0.5, 99.5] percentiles (lower bound raised to 0 if negative) and
    rescaled to [0, 1]; for a region mask M, SSIM is the full-volume mean (borders cropped, background
    included) of the SSIM map of ``reference * M`` against ``prediction * M``; PSNR uses data range 1 and the
    MSE over the region's voxels. Regions: ``tumour`` (seg > 0) and ``healthy`` (seg == 0: every non-tumour
    voxel, background included).

See documentation/evaluation.md for the formulas and why the two give different numbers.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from synthunet.dataset.label_scheme import BRATS_REGIONS, LabelScheme, brats_2023_scheme
from synthunet.errors import SynthUNetError
from synthunet.evaluation import ssim as ssim_module
from synthunet.preprocessing.cropping import bounding_box

METRICS = ("MAE", "MSE", "PSNR", "SSIM", "NCC")
MODES = ("region", "brasyn")
NORMALISATIONS = ("percentile", "none")
DEFAULT_NORMALISATION = "percentile"
REGION_PERCENTILES = (0.5, 99.5)
PSNR_CAP_DB = 100.0
DEFAULT_LABEL_NAMES = {1: "NCR", 2: "ED", 3: "ET"}  # the BraTS 2023 default (label_scheme.brats_2023_scheme)
_DEFAULT_SCHEME = brats_2023_scheme()
BRASYN_PERCENTILES = (0.5, 99.5)
DATA_RANGE_KEYWORDS = ("region", "brain")


class EvaluationError(SynthUNetError, ValueError):
    """Inputs that cannot be evaluated (shape mismatch, empty brain, bad option); the message names the case."""

    hint = "documentation/evaluation.md describes the accepted folders and file names"


@dataclass(frozen=True)
class RegionResult:
    """Metrics of one region; ``NaN`` where a metric is undefined (e.g. NCC of a constant region)."""

    n_voxels: int
    MAE: float
    MSE: float
    PSNR: float
    SSIM: float
    NCC: float
    psnr_data_range: float
    ssim_data_range: float

    def as_dict(self) -> dict[str, float]:
        return {"n_voxels": self.n_voxels, **{m: getattr(self, m) for m in METRICS},
                "psnr_data_range": self.psnr_data_range, "ssim_data_range": self.ssim_data_range}


def psnr_db(mse: float, data_range: float) -> float:
    """``10 log10(data_range^2 / mse)``, capped at :data:`PSNR_CAP_DB` (identical images give the cap).

    NaN when the data range is zero or not finite (a constant reference: PSNR is undefined).
    """
    if not math.isfinite(data_range) or data_range <= 0 or not math.isfinite(mse):
        return float("nan")
    if mse <= 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(data_range ** 2 / mse))


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two voxel sets; NaN when either is constant or empty."""
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if denominator == 0:
        return float("nan")
    return float(np.dot(a, b) / denominator)


def percentile_normalise(volume: np.ndarray, percentiles: tuple[float, float] = BRASYN_PERCENTILES,
                         strictly_positive: bool = True, mask: np.ndarray | None = None,
                         clip: bool = True) -> np.ndarray:
    """Clip a volume to its own percentiles and rescale to [0, 1]: ``(clip(v, lo, hi) - lo) / (hi - lo)``.

    With ``clip=False`` (region mode) the volume is only rescaled, ``(v - lo) / (hi - lo)``: an affine map
    that removes gain and offset but keeps voxels brighter than ``hi`` (e.g. enhancing tumour) above 1.

    The percentiles are computed over all voxels, background included (``mask`` None, as the BraSyn
    organisers do), or over the voxels where ``mask`` is non-zero (region mode: inside the brain). The whole
    volume is then clipped and rescaled with these bounds. The lower bound is raised to 0 when it is
    negative (``strictly_positive``). Percentiles use numpy's default linear interpolation. A volume whose
    bounds coincide (constant inside the mask) becomes all zeros.
    """
    volume = np.asarray(volume, dtype=np.float64)
    if mask is None:
        values = volume
    else:
        mask = np.asarray(mask) != 0
        if mask.shape != volume.shape:
            raise EvaluationError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
        if not mask.any():
            raise EvaluationError("the mask for the percentile normalisation is empty")
        values = volume[mask]
    low, high = np.percentile(values, percentiles)
    if strictly_positive and low < 0:
        low = 0.0
    if not high > low:
        return np.zeros_like(volume)
    if clip:
        volume = np.clip(volume, low, high)
    return (volume - low) / (high - low)


def default_brain_mask(reference: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Brain mask when none is given: the reference's non-zero voxels, holes filled in 3D, plus labels > 0."""
    mask = ndimage.binary_fill_holes(reference != 0)
    if labels is not None:
        mask |= labels > 0
    return mask


def _ssim_map_numpy(reference: np.ndarray, prediction: np.ndarray, data_range: float) -> np.ndarray:
    with torch.no_grad():
        result = ssim_module.ssim_map(torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float64)),
                                      torch.from_numpy(np.ascontiguousarray(prediction, dtype=np.float64)),
                                      data_range=data_range, spatial_dims=reference.ndim)
    return result.numpy()


def region_ssim_map(reference: np.ndarray, prediction: np.ndarray, data_range: float,
                    support: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """SSIM map of the whole volume, computed only where it is needed: around ``support``.

    Returns the map on the bounding box of ``support`` grown by the window radius, and that box. Inside
    the support the values equal those of the full-volume map exactly (windows never reach the box's
    cut faces; the volume's own border uses the same mirror extension).
    """
    if not support.any():
        raise EvaluationError("empty support for the SSIM map")
    box = bounding_box(support, ssim_module.window_radius())
    return _ssim_map_numpy(reference[box], prediction[box], data_range), box


def _check_inputs(reference: np.ndarray, prediction: np.ndarray, brain_mask, labels) -> None:
    if reference.shape != prediction.shape:
        raise EvaluationError(f"reference shape {reference.shape} differs from prediction shape {prediction.shape}")
    if reference.ndim not in (2, 3):
        raise EvaluationError(f"images must be 2D or 3D, got shape {reference.shape}")
    window = ssim_module.window_size()
    if min(reference.shape) < window:
        raise EvaluationError(f"image shape {reference.shape} is smaller than the {window}-voxel SSIM window")
    for name, array in (("brain mask", brain_mask), ("labels", labels)):
        if array is not None and array.shape != reference.shape:
            raise EvaluationError(f"{name} shape {array.shape} differs from image shape {reference.shape}")


def _label_region_names(label_scheme: LabelScheme | None, label_names: dict[int, str] | None) -> dict[int, str]:
    """value -> per-label region name, in report order: ``label_names`` as given (sorted by value), else the
    scheme's names (NCR, ED, ET first), else the BraTS 2023 default."""
    if label_names is not None:
        return dict(sorted((int(v), str(n)) for v, n in label_names.items()))
    return dict((label_scheme or _DEFAULT_SCHEME).names)


def _region_masks(brain: np.ndarray, labels: np.ndarray | None,
                  label_names: dict[int, str]) -> dict[str, np.ndarray]:
    """brain, tumour (labels > 0), healthy and one region per label value present, in ``label_names``
    order (values it does not name come last as ``label_{value}``)."""
    regions = {"brain": brain}
    if labels is not None:
        tumour = labels > 0
        regions["tumour"] = tumour
        regions["healthy"] = brain & ~tumour
        present = {int(v) for v in np.unique(labels) if v > 0}
        ordered = [v for v in label_names if v in present] + sorted(present - set(label_names))
        for value in ordered:
            name = label_names.get(value, f"label_{value}")
            if name in regions:
                name = f"label_{value}"
            regions[name] = labels == value
    return {name: mask for name, mask in regions.items() if mask.any()}


def _pointwise(reference_values: np.ndarray, prediction_values: np.ndarray) -> tuple[float, float, float]:
    difference = prediction_values - reference_values
    mae = float(np.mean(np.abs(difference)))
    mse = float(np.mean(difference * difference))
    return mae, mse, normalised_cross_correlation(reference_values, prediction_values)


def _parse_data_range(data_range: float | str | None, mode: str) -> float | str | None:
    if data_range is None:
        return None
    if isinstance(data_range, str):
        keyword = data_range.strip().lower()
        if keyword in DATA_RANGE_KEYWORDS:
            if mode != "region":
                raise EvaluationError(f"data_range {data_range!r} is only valid in region mode; in brasyn mode give a "
                                      "number or nothing (the organisers' ranges)")
            return keyword
        try:
            data_range = float(keyword)
        except ValueError:
            raise EvaluationError(f"data_range must be a positive number, 'region' or 'brain', got {data_range!r}") \
                from None
    data_range = float(data_range)
    if not data_range > 0 or not math.isfinite(data_range):
        raise EvaluationError(f"data_range must be a positive finite number, got {data_range}")
    return data_range


def check_normalisation(normalisation: str, mode: str) -> str:
    """Validate the ``normalisation`` option for ``mode``; return it lower-cased.

    Region mode: ``"percentile"`` or ``"none"``. Brasyn mode always uses the organisers' whole-volume
    percentile normalisation, so only ``"percentile"`` is accepted there.
    """
    value = str(normalisation).strip().lower() if normalisation is not None else ""
    if value not in NORMALISATIONS:
        raise EvaluationError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    if mode == "brasyn" and value != "percentile":
        raise EvaluationError("brasyn mode always applies the organisers' whole-volume percentile normalisation; "
                              f"normalisation {normalisation!r} is only valid in region mode")
    return value


def normalisation_settings(mode: str, normalisation: str) -> dict:
    """A description of the normalisation that ``mode`` / ``normalisation`` apply (for summary.json)."""
    if check_normalisation(normalisation, mode) == "none":
        return {"method": "none"}
    return {"method": "percentile",
            "percentiles": list(REGION_PERCENTILES if mode == "region" else BRASYN_PERCENTILES),
            "computed_over": "brain mask" if mode == "region" else "whole volume, background included",
            "per_volume": "reference and prediction independently",
            "lower_bound": "raised to 0 if negative", "rescaled_to": [0.0, 1.0]}


def region_normalise(volume: np.ndarray, brain: np.ndarray, normalisation: str = DEFAULT_NORMALISATION) -> np.ndarray:
    """One volume as region mode compares it (float64): ``"percentile"`` rescales it by its own
    :data:`REGION_PERCENTILES` inside ``brain`` (each volume independently: per-scan gains drop out);
    ``"none"`` leaves it as given. The report draws the volumes through this function too."""
    volume = np.asarray(volume, dtype=np.float64)
    if check_normalisation(normalisation, "region") == "none":
        return volume
    return percentile_normalise(volume, REGION_PERCENTILES, mask=brain, clip=False)


def evaluate_case(reference: np.ndarray, prediction: np.ndarray, brain_mask: np.ndarray | None = None,
                  labels: np.ndarray | None = None, mode: str = "region", data_range: float | str | None = None,
                  label_names: dict[int, str] | None = None,
                  normalisation: str = DEFAULT_NORMALISATION,
                  label_scheme: LabelScheme | None = None) -> dict[str, dict[str, float]]:
    """Metrics of one prediction against its reference, per region.

    Args:
        reference, prediction: 2D or 3D arrays of the same shape (the target sequence).
        brain_mask: brain mask (non-zero inside); default :func:`default_brain_mask` of the reference.
        labels: tumour label map (0 background/healthy, > 0 tumour; numbered as ``label_scheme`` says);
            without it only ``brain`` (region mode) or ``healthy`` = whole volume (brasyn mode) is reported.
        mode: ``"region"`` or ``"brasyn"`` (see the module docstring).
        data_range: region mode: ``"region"`` / None (PSNR uses each region's reference max - min, SSIM the
            brain's), ``"brain"`` (both use the brain's reference range) or a number (both use it); ranges
            are taken after the normalisation.
            brasyn mode: None (PSNR 1, SSIM as torchmetrics infers it: the larger of the two masked
            images' max - min) or a number (both use it).
        label_names: names of the per-label regions, value -> name (overrides ``label_scheme``'s names).
        label_scheme: which value is which tumour label (:mod:`synthunet.dataset.label_scheme`, e.g.
            ``load_dataset_json(path).label_scheme()``); default the BraTS 2023 numbering
            (``{1: "NCR", 2: "ED", 3: "ET"}``).
        normalisation: region mode: ``"percentile"`` (default; each volume clipped to its own
            [0.5, 99.5] percentiles inside the brain mask, lower bound raised to 0 if negative, rescaled to
            [0, 1]) or ``"none"`` (images compared as given). Brasyn mode accepts only ``"percentile"`` (its
            whole-volume normalisation, unchanged).

    Returns:
        ``{region: {"n_voxels", "MAE", "MSE", "PSNR", "SSIM", "NCC", "psnr_data_range", "ssim_data_range"}}``;
        empty regions are left out. PSNR is capped at :data:`PSNR_CAP_DB`.
    """
    if mode not in MODES:
        raise EvaluationError(f"mode must be one of {MODES}, got {mode!r}")
    reference = np.asarray(reference, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    labels = None if labels is None else np.asarray(labels)
    brain_mask = None if brain_mask is None else np.asarray(brain_mask) != 0
    _check_inputs(reference, prediction, brain_mask, labels)
    if not (np.isfinite(reference).all() and np.isfinite(prediction).all()):
        raise EvaluationError("reference or prediction holds NaN or infinite values")
    parsed_range = _parse_data_range(data_range, mode)
    normalisation = check_normalisation(normalisation, mode)
    names = _label_region_names(label_scheme, label_names)
    if mode == "region":
        return _evaluate_region_mode(reference, prediction, brain_mask, labels, parsed_range, names, normalisation)
    return _evaluate_brasyn_mode(reference, prediction, labels, parsed_range)


def _evaluate_region_mode(reference, prediction, brain_mask, labels, data_range, label_names, normalisation):
    brain = default_brain_mask(reference, labels) if brain_mask is None else brain_mask
    if not brain.any():
        raise EvaluationError("the brain mask is empty (no non-zero reference voxel and no mask given)")
    reference = region_normalise(reference, brain, normalisation)
    prediction = region_normalise(prediction, brain, normalisation)
    regions = _region_masks(brain, labels, label_names)
    support = np.zeros(reference.shape, dtype=bool)
    for mask in regions.values():
        support |= mask
    brain_values = reference[brain]
    brain_range = float(brain_values.max() - brain_values.min())
    ssim_range = data_range if isinstance(data_range, float) else brain_range
    if ssim_range > 0:
        ssim_values, box = region_ssim_map(reference, prediction, ssim_range, support)
    else:
        ssim_values, box = None, None
    results = {}
    for name, mask in regions.items():
        ref_values = reference[mask]
        pred_values = prediction[mask]
        mae, mse, ncc = _pointwise(ref_values, pred_values)
        if isinstance(data_range, float):
            psnr_range = data_range
        elif data_range == "brain":
            psnr_range = brain_range
        else:
            psnr_range = float(ref_values.max() - ref_values.min())
        ssim_value = float(ssim_values[mask[box]].mean()) if ssim_values is not None else float("nan")
        results[name] = RegionResult(int(mask.sum()), mae, mse, psnr_db(mse, psnr_range), ssim_value, ncc,
                                     psnr_range, ssim_range).as_dict()
    return results


def brasyn_masked_ssim(reference: np.ndarray, prediction: np.ndarray, mask: np.ndarray,
                       data_range: float | None = None) -> tuple[float, float]:
    """BraSyn SSIM of one region: mean over the whole volume (borders cropped) of SSIM(ref*M, pred*M).

    ``reference`` and ``prediction`` are already percentile-normalised. ``data_range`` None infers it as
    torchmetrics does (the larger max - min of the two masked volumes). Returns (SSIM, data range used).
    Only the part of the volume near the mask is filtered: elsewhere both masked images are zero in the
    whole window, where SSIM is exactly 1.
    """
    masked_ref = reference * mask
    masked_pred = prediction * mask
    if data_range is None:
        data_range = float(max(np.ptp(masked_ref), np.ptp(masked_pred)))
    radius = ssim_module.window_radius()
    interior = tuple(slice(radius, size - radius) for size in reference.shape)
    n_interior = int(np.prod([size - 2 * radius for size in reference.shape]))
    support = (masked_ref != 0) | (masked_pred != 0)
    if data_range <= 0:
        return (1.0 if not support.any() else float("nan")), data_range
    if not support.any():  # both masked images are zero everywhere: SSIM is 1 at every voxel
        return 1.0, data_range
    box = bounding_box(support, radius)
    values = _ssim_map_numpy(masked_ref[box], masked_pred[box], data_range)
    # the part of the interior that lies inside the box, in box coordinates
    local = tuple(slice(max(i.start, b.start) - b.start, min(i.stop, b.stop) - b.start)
                  for i, b in zip(interior, box))
    inside = values[local]
    total = float(inside.sum()) + (n_interior - inside.size) * 1.0
    return total / n_interior, data_range


def _evaluate_brasyn_mode(reference, prediction, labels, data_range):
    ref_n = percentile_normalise(reference)
    pred_n = percentile_normalise(prediction)
    if labels is None:
        warnings.warn("brasyn mode without labels: only 'healthy' (= the whole volume) is reported", stacklevel=3)
        tumour = np.zeros(reference.shape, dtype=bool)
    else:
        tumour = labels > 0
    regions = {"tumour": tumour, "healthy": ~tumour}
    psnr_range = 1.0 if data_range is None else data_range
    results = {}
    for name, mask in regions.items():
        if not mask.any():
            continue
        mae, mse, ncc = _pointwise(ref_n[mask], pred_n[mask])
        ssim_value, ssim_range = brasyn_masked_ssim(ref_n, pred_n, mask, data_range)
        results[name] = RegionResult(int(mask.sum()), mae, mse, psnr_db(mse, psnr_range), ssim_value, ncc,
                                     psnr_range, ssim_range).as_dict()
    return results


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two binary masks; 1.0 when both are empty (the BraTS convention)."""
    reference = reference.astype(bool)
    prediction = prediction.astype(bool)
    total = int(reference.sum()) + int(prediction.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((reference & prediction).sum()) / total


def brats_region_dice(reference_labels: np.ndarray, predicted_labels: np.ndarray,
                      label_scheme: LabelScheme | None = None, regions: Sequence[str] | None = None,
                      prediction_scheme: LabelScheme | None = None, check_values: bool = True) -> dict[str, float]:
    """Dice per BraTS region, each region a set of label values of ``label_scheme`` (default BraTS 2023:
    WT = {1, 2, 3}, TC = {1, 3}, ET = {3}; nnU-Net's Dataset137: WT = {1, 2, 3}, TC = {2, 3}, ET = {3}).

    ``regions``: which of WT, TC, ET (default all three); one the scheme cannot map raises
    :class:`~synthunet.dataset.label_scheme.LabelSchemeError` naming the labels it could not map. A label
    value that the scheme does not declare, in either map, raises it too (two numberings mixed up), unless
    ``check_values`` is False (such voxels then belong to no region). ``prediction_scheme``: the numbering of ``predicted_labels`` when it differs from the reference's (e.g.
    an nnU-Net Dataset137 segmenter scored against BraTS 2023 labels); default ``label_scheme``.
    """
    scheme = label_scheme or _DEFAULT_SCHEME
    predicted_scheme = prediction_scheme or scheme
    regions = scheme.check_regions(BRATS_REGIONS if regions is None else regions)
    predicted_scheme.check_regions(regions)
    if reference_labels.shape != predicted_labels.shape:
        raise EvaluationError(f"label map shapes differ: {reference_labels.shape} vs {predicted_labels.shape}")
    if check_values:
        scheme.check_values(reference_labels, "reference label map")
        predicted_scheme.check_values(predicted_labels, "predicted label map")
    return {region: dice(scheme.region_mask(reference_labels, region),
                         predicted_scheme.region_mask(predicted_labels, region)) for region in regions}
