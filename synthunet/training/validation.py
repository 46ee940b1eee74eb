"""End-of-training validation on whole volumes, the way inference will see them.

For every validation case of the fold: predict the preprocessed volume with the inference package's
sliding window (3D) or 2.5D slice-wise prediction fused over the three principal axes, set the
prediction to 0 outside the brain, undo the preprocessing (resample to the raw grid, back to raw units of
the target, paste into the raw frame), write ``validation/{case}_{XXXX}{ending}`` and evaluate the folder
against the raw references with :func:`synthunet.evaluation.evaluate_folders` (``summary.json``,
``per_case.csv`` in ``validation/``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from synthunet import paths
from synthunet.dataset.dataset_json import image_file_name
from synthunet.dataset.image_io import Geometry, write_image
from synthunet.training.experiment import Experiment

#: 2.5D validation fuses the principal slicing axes (1 if the plans slice along a single axis)
VALIDATION_STEP_SIZE = 0.5


def predict_preprocessed_case(network: nn.Module, inputs: np.ndarray, experiment: Experiment,
                              device: torch.device) -> np.ndarray:
    """``(len(inputs), z, y, x)`` preprocessed inputs -> ``(z, y, x)`` float32 prediction (normalised scale)."""
    from synthunet.inference.orientation_fusion import predict_volume_25d
    from synthunet.inference.sliding_window import predict_volume_sliding_window

    config = experiment.config
    patch_size = [int(p) for p in config["patch_size"]]
    network.eval()
    if experiment.dimension == 3:
        prediction = predict_volume_sliding_window(network, inputs, patch_size, VALIDATION_STEP_SIZE,
                                                   use_mirroring=False, device=device)
    else:
        axes = [int(a) for a in config.get("slicing_axes", [0])]
        orientations = 3 if sorted(axes) == [0, 1, 2] else 1
        prediction = predict_volume_25d(network, inputs, experiment.num_slices, patch_size, orientations=orientations,
                                        step_size=VALIDATION_STEP_SIZE, use_mirroring=False, device=device,
                                        axial_axis=axes[0])
    return np.asarray(prediction, dtype=np.float32)[0]


def validate_full_volumes(experiment: Experiment, network: nn.Module, device: torch.device, folder: Path,
                          log: Callable[..., None] = print) -> dict:
    """Predict, export and evaluate the fold's validation cases; return the evaluation summary."""
    from synthunet.evaluation import evaluate_folders
    from synthunet.preprocessing import load_case, revert_preprocessing

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _, val_cases = experiment.fold_cases()
    raw = paths.raw_folder() / experiment.dataset_name
    if not (raw / "imagesTr").is_dir():
        raise FileNotFoundError(f"Full-volume validation compares with the raw images, but {raw / 'imagesTr'} does "
                                "not exist. Restore the raw dataset and run synth_train ... --val_only.")
    file_ending = experiment.dataset_json.get("file_ending", ".nii.gz")
    for number, case_id in enumerate(val_cases):
        data, seg, properties = load_case(experiment.data_folder, case_id, mmap=True)
        inputs = np.stack([np.asarray(data[i], dtype=np.float32) for i in experiment.input_indices])
        prediction = predict_preprocessed_case(network, inputs, experiment, device)
        prediction[np.asarray(seg[0]) < 0] = 0  # outside the brain, as inference does
        restored = np.maximum(revert_preprocessing(prediction, properties, experiment.plans, experiment.configuration,
                                                   experiment.target), 0)
        geometry = Geometry.from_dict(properties["geometry"])
        write_image(restored.astype(np.float32), geometry,
                    folder / image_file_name(case_id, experiment.target_index, file_ending))
        log(f"validation case {number + 1}/{len(val_cases)}: {case_id} predicted")
    dataset_json = raw / "dataset.json"
    summary = evaluate_folders(raw / "imagesTr", folder, folder,
                               labels_folder=raw / "labelsTr" if (raw / "labelsTr").is_dir() else None,
                               masks_folder=raw / "masksTr" if (raw / "masksTr").is_dir() else None,
                               dataset_json=dataset_json if dataset_json.is_file() else None,
                               targets=[experiment.target], cases=val_cases, progress=False)
    log("full-volume validation: " + _headline(summary, experiment.target))
    return summary


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
