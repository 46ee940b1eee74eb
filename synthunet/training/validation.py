"""End-of-training validation on whole volumes, on the normalised (preprocessed) scale.

For every validation case of the fold the preprocessed inputs are predicted as a whole volume with the
prediction core that inference uses (:mod:`synthunet.prediction`): sliding window (3D) or slice-wise
prediction fused over the three principal axes (2.5D). The prediction (0 outside the brain, as inference
writes it) and the preprocessed reference target are written as NIfTI on the preprocessed grid, with the
case's labels and brain mask, and evaluated with
:func:`synthunet.evaluation.evaluate_folders` (``summary.json``, ``per_case.csv``), data range 1.

Why the normalised scale and not raw units: raw intensities carry an arbitrary per-scan gain (MRI has no
absolute unit; the example dataset simulates it), while a prediction written back in raw units uses the
training set's typical scale; raw-unit MAE/PSNR then measure the gain mismatch, not the model. On the
Nyúl-standardised scale every case is comparable and the numbers are those the loss optimises
(documentation/evaluation.md recommends the same for such data).

In the fold folder::

    validation/{case}_{XXXX}.nii.gz                 prediction of target channel XXXX (normalised scale,
                                                    preprocessed grid, 0 outside the brain)
    validation/summary.json, validation/per_case.csv
    validation_reference/images/{case}_{XXXX}.nii.gz  the preprocessed target
    validation_reference/labels/{case}.nii.gz        tumour labels (0 outside the tumour)
    validation_reference/masks/{case}.nii.gz         brain mask
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from synthunet.dataset.dataset_json import image_file_name
from synthunet.dataset.image_io import Geometry, write_image
from synthunet.training.experiment import Experiment

VALIDATION_STEP_SIZE = 0.5
#: sibling of validation/ holding the references, labels and masks the predictions are scored against
REFERENCE_FOLDER = "validation_reference"
#: data range of the normalised scale (Nyúl standard scale / 100) for PSNR and SSIM
VALIDATION_DATA_RANGE = 1.0


def predict_preprocessed_case(network: nn.Module, inputs: np.ndarray, experiment: Experiment,
                              device: torch.device) -> np.ndarray:
    """``(len(inputs), z, y, x)`` preprocessed inputs -> ``(z, y, x)`` float32 prediction (normalised scale)."""
    from synthunet.prediction.orientation_fusion import predict_volume_25d
    from synthunet.prediction.sliding_window import predict_volume_sliding_window

    config = experiment.config
    patch_size = list(config.patch_size)
    network.eval()
    if experiment.dimension == 3:
        prediction = predict_volume_sliding_window(network, inputs, patch_size, VALIDATION_STEP_SIZE,
                                                   use_mirroring=False, device=device)
    else:
        axes = list(config.slicing_axes)
        orientations = 3 if sorted(axes) == [0, 1, 2] else 1
        prediction = predict_volume_25d(network, inputs, experiment.num_slices, patch_size, orientations=orientations,
                                        step_size=VALIDATION_STEP_SIZE, use_mirroring=False, device=device,
                                        axial_axis=axes[0])
    return np.asarray(prediction, dtype=np.float32)[0]


def preprocessed_geometry(properties: dict, shape: tuple[int, ...]) -> Geometry:
    """A geometry for the preprocessed grid: the case's target spacing, origin 0, identity direction."""
    spacing = properties.get("spacing", [1.0] * len(shape))
    return Geometry(itk_spacing=tuple(float(s) for s in reversed(spacing)), itk_origin=(0.0,) * len(shape),
                    itk_direction=tuple(float(v) for v in np.eye(len(shape)).ravel()), shape=tuple(shape))


def validate_full_volumes(experiment: Experiment, network: nn.Module, device: torch.device, folder: Path,
                          log: Callable[..., None] = print) -> dict:
    """Predict, write and evaluate the fold's validation cases; return the evaluation summary."""
    from synthunet.evaluation import evaluate_folders
    from synthunet.preprocessing import load_case

    folder = Path(folder)
    reference = folder.parent / REFERENCE_FOLDER
    _, val_cases = experiment.fold_cases()
    file_ending = ".nii.gz"
    for number, case_id in enumerate(val_cases):
        data, seg, properties = load_case(experiment.data_folder, case_id, mmap=True)
        inputs = np.stack([np.asarray(data[i], dtype=np.float32) for i in experiment.input_indices])
        segmentation = np.asarray(seg[0])
        brain = segmentation >= 0
        prediction = predict_preprocessed_case(network, inputs, experiment, device)
        prediction[~brain] = 0  # outside the brain, as inference writes it
        geometry = preprocessed_geometry(properties, prediction.shape)
        name = image_file_name(case_id, experiment.target_index, file_ending)
        write_image(np.asarray(data[experiment.target_index], dtype=np.float32), geometry, reference / "images" / name)
        write_image(np.clip(segmentation, 0, None).astype(np.uint8), geometry,
                    reference / "labels" / f"{case_id}{file_ending}")
        write_image(brain.astype(np.uint8), geometry, reference / "masks" / f"{case_id}{file_ending}")
        write_image(prediction, geometry, folder / name)
        log(f"validation case {number + 1}/{len(val_cases)}: {case_id} predicted")
    channel_names = {str(i): c for i, c in enumerate(experiment.channels)}
    labels = {name: value for name, value in experiment.dataset_json.get("labels", {}).items()}
    dataset_json = reference / "dataset.json"
    _write_dataset_json(dataset_json, channel_names, labels, len(val_cases),
                        experiment.dataset_json.get("regions_class_order"))
    summary = evaluate_folders(reference / "images", folder, folder, labels_folder=reference / "labels",
                               masks_folder=reference / "masks", dataset_json=dataset_json,
                               data_range=VALIDATION_DATA_RANGE, targets=[experiment.target], cases=val_cases,
                               progress=False, normalisation="none")  # preprocessed: already on one scale
    log("full-volume validation (normalised scale): " + _headline(summary, experiment.target))
    return summary


def _write_dataset_json(path: Path, channel_names: dict, labels: dict, count: int,
                        regions_class_order: list | None = None) -> None:
    from synthunet.utilities.atomic_io import write_json_atomic

    content = {"channel_names": channel_names, "labels": labels, "numTraining": max(1, count), "file_ending": ".nii.gz"}
    if regions_class_order is not None:  # nnU-Net regions: the evaluation reads the labels with their order
        content["regions_class_order"] = regions_class_order
    write_json_atomic(path, content)


def _headline(summary: dict, target: str) -> str:
    """A one-line digest of the summary (brain SSIM / PSNR / MAE means when present)."""
    per_target = summary.get("per_target", {})
    block = per_target.get(target, per_target)
    try:
        brain = block["brain"] if "brain" in block else next(iter(block.values()))
        parts = [f"{metric} {brain[metric]['mean']:.4g}" for metric in ("SSIM", "PSNR", "MAE") if metric in brain]
        return ", ".join(parts) + f" over {summary.get('num_cases', '?')} cases (see validation/summary.json)"
    except (KeyError, TypeError, StopIteration, AttributeError):
        return f"{summary.get('num_cases', '?')} cases evaluated (see validation/summary.json)"
