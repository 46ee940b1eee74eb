"""The preprocessing of one case, shared by training (files) and inference (arrays).

crop to the brain's bounding box -> Nyúl + range scaling with the case's own landmarks (original
resolution, inside the brain) -> resample to the configuration's spacing -> zero outside the brain.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping

import numpy as np

from synthunet.dataset.brain_mask import brain_mask
from synthunet.dataset.image_io import Geometry
from synthunet.errors import CaseError
from synthunet.plans import Plans, as_plans
from synthunet.preprocessing.cropping import brain_bbox, crop
from synthunet.preprocessing.nyul import normalize_case_with_landmarks
from synthunet.preprocessing.resampling import compute_new_shape, resample_data, resample_seg

MAX_CLASS_LOCATIONS = 10000  # tumour voxel coordinates kept per case (split evenly over the labels present)
FORMAT_VERSION = 1


def preprocessing_signature(plans: Plans | Mapping, configuration: str) -> str:
    """Hash of everything in the plans that changes a preprocessed case (spacing, resampling, normalisation)."""
    plans = as_plans(plans)
    block = plans.configuration(configuration)
    relevant = {"version": FORMAT_VERSION, "channel_names": plans.channels,
                "spacing": list(block.spacing), "resampling": block.resampling.to_dict(),
                "normalization": plans.normalization}
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def sample_class_locations(seg: np.ndarray, case_id: str, max_locations: int = MAX_CLASS_LOCATIONS) -> dict[str, list]:
    """Up to ``max_locations`` random (z, y, x) voxel coordinates of the tumour, split over label values."""
    volume = seg[0] if seg.ndim == 4 else seg
    values = [int(v) for v in np.unique(volume) if v > 0]
    if not values:
        return {}
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    per_class = int(np.ceil(max_locations / len(values)))
    locations = {}
    for value in values:
        coordinates = np.argwhere(volume == value)
        if len(coordinates) > per_class:
            coordinates = coordinates[np.sort(rng.choice(len(coordinates), per_class, replace=False))]
        locations[str(value)] = coordinates.astype(int).tolist()
    return locations


def preprocess_arrays(images: Mapping[int, np.ndarray], geometry: Geometry, plans: Plans | Mapping, configuration: str,
                      mask: np.ndarray | None = None, label: np.ndarray | None = None,
                      case_id: str = "case") -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """Preprocess one case given as arrays (channel index -> (z, y, x) image).

    Returns ``(data (C, z, y, x) float32, seg (1, z, y, x) int8, properties, cropped brain mask)``; channels
    not in ``images`` are zeros. The brain mask is at the original resolution, cropped to the bounding box.
    """
    plans = as_plans(plans)
    names = plans.channels
    block = plans.configuration(configuration)
    options = block.resampling
    present = sorted(images)
    for channel in present:
        if not 0 <= channel < len(names):
            raise CaseError(f"Case {case_id}: channel index {channel} is not in the plans' channels {names}")
        if tuple(images[channel].shape) != tuple(geometry.shape):
            raise CaseError(f"Case {case_id}: channel {names[channel]} has shape {images[channel].shape}, "
                            f"geometry says {geometry.shape}")
    brain = brain_mask([images[c] for c in present], mask)
    bbox = brain_bbox(brain)
    brain = crop(brain, bbox)
    stacked = np.stack([crop(np.asarray(images[c], dtype=np.float32), bbox) for c in present])
    normalised, landmarks = normalize_case_with_landmarks(stacked, brain, plans.normalization,
                                                          [names[c] for c in present])
    data = np.zeros((len(names),) + stacked.shape[1:], dtype=np.float32)
    data[present] = normalised
    seg = np.where(brain, 0, -1).astype(np.int8)
    if label is not None:
        cropped_label = crop(np.asarray(label), bbox).astype(np.int16)
        if cropped_label.min() < 0 or cropped_label.max() > 127:
            raise CaseError(f"Case {case_id}: label values must lie in 0..127, got {np.unique(cropped_label)}")
        inside = brain & (cropped_label > 0)
        seg[inside] = cropped_label[inside]
    spacing = [float(v) for v in geometry.spacing]
    target_spacing = list(block.spacing)
    new_shape = compute_new_shape(data.shape[1:], spacing, target_spacing)
    threshold = options.separate_z_anisotropy_threshold
    data = resample_data(data, spacing, target_spacing, new_shape, options.order_data, options.order_z_data, threshold)
    seg = resample_seg(seg[None], spacing, target_spacing, new_shape, options.order_seg, options.order_z_seg, threshold)
    data[:, seg[0] < 0] = 0
    properties = {
        "case_id": case_id,
        "geometry": geometry.to_dict(),
        "shape_before_cropping": [int(v) for v in geometry.shape],
        "bbox": bbox,
        "shape_after_cropping": [int(b - a) for a, b in bbox],
        "spacing_before_resampling": spacing,
        "spacing": target_spacing,
        "shape_after_resampling": [int(v) for v in new_shape],
        "channel_names": names,
        "channels_present": [names[c] for c in present],
        "landmarks": landmarks,
        "brain_mask_source": "mask" if mask is not None else "nonzero",
        "brain_voxels": int(np.count_nonzero(seg >= 0)),
        "has_labels": label is not None,
        "labels_present": [int(v) for v in np.unique(seg) if v > 0],
        "class_locations": sample_class_locations(seg, case_id),
        "configuration": configuration,
        "data_identifier": block.data_identifier,
        "plans_name": plans.plans_name,
        "preprocessing_signature": preprocessing_signature(plans, configuration),
    }
    return data, seg, properties, brain
