"""Preprocessing for prediction and writing predictions back into the input geometry.

``preprocess_case_for_inference`` runs exactly the training preprocessing on the images of one case;
``revert_preprocessing`` undoes it for a predicted target channel: resample back to the cropped
original grid, convert to raw units of a typical training case (``denormalize_target``), set voxels
outside the brain to 0 and paste into the original frame.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from synthunet.dataset.image_io import Geometry
from synthunet.dataset.raw_cases import read_case_images
from synthunet.errors import InputError
from synthunet.plans import Plans, ResamplingPlan, as_plans
from synthunet.preprocessing.case_preprocessing import preprocess_arrays
from synthunet.preprocessing.cropping import crop, paste
from synthunet.preprocessing.nyul import denormalize_target
from synthunet.preprocessing.resampling import resample_data, resample_seg


def _read_inputs(images: Sequence[np.ndarray | str | Path], geometry: Geometry | None,
                 names: Sequence[str]) -> tuple[list[np.ndarray], Geometry]:
    """The input arrays (files read by :func:`read_case_images`) and their geometry (``geometry``, else the files')."""
    files = {name: image for name, image in zip(names, images) if isinstance(image, (str, Path))}
    read, file_geometry = read_case_images("inference", files) if files else ({}, None)
    if geometry is None:
        geometry = file_geometry
    elif file_geometry is not None and (differences := geometry.differences(file_geometry)):
        raise InputError(f"The input files {', '.join(map(str, files.values()))} do not lie on the grid of the "
                         f"given geometry: {'; '.join(differences)}")
    if geometry is None:
        raise ValueError("Pass the geometry of the input arrays (or give file paths)")
    return [read[name] if name in files else np.asarray(image, dtype=np.float32)
            for name, image in zip(names, images)], geometry


def preprocess_case_for_inference(images: Sequence[np.ndarray | str | Path], geometry: Geometry | None,
                                  plans: Plans | Mapping, configuration: str, channel_names_present: Sequence[str],
                                  brain_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Preprocess the available images of one case (arrays in (z, y, x) order, or image files).

    ``channel_names_present[i]`` names ``images[i]``. Returns ``(data (C, z, y, x) float32, properties)``
    with every channel of the plans in channel-index order (absent channels are zeros). ``properties`` is
    the training properties dict plus ``"brain_mask"``, the cropped original-resolution brain mask without
    the voxels where every input is 0 (a NumPy array, kept in memory only) that :func:`revert_preprocessing`
    uses, so an exported prediction is 0 wherever every input is.
    """
    plans = as_plans(plans)
    names = plans.channels
    if len(images) != len(channel_names_present):
        raise InputError(f"{len(images)} images but {len(channel_names_present)} channel names")
    lowered = [n.lower() for n in names]
    indices = []
    for name in channel_names_present:
        if name.lower() not in lowered:
            raise InputError(f"Channel {name!r} is not one of the plans' channels {names}")
        indices.append(lowered.index(name.lower()))
    if len(set(indices)) != len(indices):
        raise InputError(f"A channel is given twice: {list(channel_names_present)}")
    arrays, geometry = _read_inputs(images, geometry, channel_names_present)
    data, _, properties, brain = preprocess_arrays(dict(zip(indices, arrays)), geometry, plans, configuration,
                                                   mask=brain_mask, case_id="inference")
    # the filled brain also covers voxels where every input is 0 (a sulcus closed in one slice); a prediction
    # must stay 0 there, as it is outside the brain
    any_input = np.any([crop(array, properties["bbox"]) != 0 for array in arrays], axis=0)
    properties["brain_mask"] = brain & any_input
    return data, properties


def _brain_on_cropped_grid(brain_mask: np.ndarray, properties: Mapping, options: ResamplingPlan) -> np.ndarray:
    """A brain mask on the cropped original grid, from one on that grid or on the preprocessed grid."""
    brain = np.asarray(brain_mask).astype(bool)
    if brain.ndim == 4:
        brain = brain[0]
    if tuple(brain.shape) == tuple(properties["shape_after_cropping"]):
        return brain
    if tuple(brain.shape) == tuple(properties["shape_after_resampling"]):
        return resample_seg(brain[None].astype(np.int8), properties["spacing"], properties["spacing_before_resampling"],
                            properties["shape_after_cropping"], 0, 0,
                            options.separate_z_anisotropy_threshold)[0].astype(bool)
    raise ValueError(f"brain_mask has shape {brain.shape}; expected the cropped original shape "
                     f"{tuple(properties['shape_after_cropping'])} or the preprocessed shape "
                     f"{tuple(properties['shape_after_resampling'])}")


def revert_preprocessing(prediction_in_preprocessed_space: np.ndarray, properties: Mapping, plans: Plans | Mapping,
                         configuration: str, target: str | None = None, denormalize: bool = True,
                         brain_mask: np.ndarray | None = None, landmarks_from: str | None = None) -> np.ndarray:
    """A prediction ((z, y, x) or (1, z, y, x), preprocessed space) -> float32 array in the original geometry.

    Resampled back to the cropped original grid (order ``order_data``), denormalised to raw units of
    ``target`` (default ``properties["target"]``) unless ``denormalize`` is False, set to 0 outside the
    brain and pasted into the original frame with 0 outside the crop. The brain is ``brain_mask`` (on the
    preprocessed grid, e.g. ``seg[0] >= 0`` of a training case, or on the cropped original grid), else
    ``properties["brain_mask"]`` (set by :func:`preprocess_case_for_inference`); without either, voxels
    inside the crop but outside the brain keep their denormalised value. ``landmarks_from``: an input channel
    whose own landmarks (``properties["landmarks"]``) the denormalisation uses instead of the plans' reference
    landmarks, so a same-sequence task (super-resolution) returns to the input's own intensity scale.
    """
    prediction = np.asarray(prediction_in_preprocessed_space, dtype=np.float32)
    if prediction.ndim == 3:
        prediction = prediction[None]
    expected = tuple(properties["shape_after_resampling"])
    if prediction.ndim != 4 or prediction.shape[0] != 1 or tuple(prediction.shape[1:]) != expected:
        raise ValueError(f"Prediction has shape {prediction.shape}; expected (1, *{expected}) or {expected}")
    plans = as_plans(plans)
    options = plans.configuration(configuration).resampling
    restored = resample_data(prediction, properties["spacing"], properties["spacing_before_resampling"],
                             properties["shape_after_cropping"], options.order_data, options.order_z_data,
                             options.separate_z_anisotropy_threshold)[0]
    if denormalize:
        target = target or properties.get("target")
        if target is None:
            raise ValueError("Name the target channel (target=...) so the prediction can be denormalised")
        landmarks = None
        if landmarks_from is not None:
            if landmarks_from not in properties.get("landmarks", {}):
                raise InputError(f"No landmarks of {landmarks_from} in the case's properties to export {target} with")
            landmarks = properties["landmarks"][landmarks_from]
        restored = denormalize_target(restored, plans.normalization, target, landmarks)
    brain = brain_mask if brain_mask is not None else properties.get("brain_mask")
    if brain is not None:
        restored[~_brain_on_cropped_grid(brain, properties, options)] = 0
    geometry = Geometry.from_dict(properties["geometry"])
    return paste(restored.astype(np.float32), properties["bbox"], geometry.shape, fill_value=0)
