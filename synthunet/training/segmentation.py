"""The tumour segmenter's end-of-training validation on whole volumes (its network:
:func:`~synthunet.architectures.model_network.build_segmentation_network`, loading it:
:func:`~synthunet.prediction.checkpoints.load_trained_segmenter`).

Full-volume validation: every validation case of the fold is predicted with the sliding window (50 %
overlap, Gaussian weighting, no mirroring) on the preprocessed grid, voxels outside the brain are set to
background, and Dice is computed against the preprocessed labels: WT / TC / ET (BraTS regions, as far as
dataset.json's labels map them, :mod:`synthunet.dataset.label_scheme`) and per label. In the fold folder::

    validation/{case}.nii.gz    predicted label map (uint8, preprocessed grid)
    validation/dice.csv         case, WT, TC, ET, Dice per label (by dataset.json name)
    validation/summary.json     statistics per column over the cases
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

DICE_FILE = "dice.csv"


def label_dice(reference: np.ndarray, prediction: np.ndarray, labels: dict[str, int],
               label_scheme=None) -> dict[str, float]:
    """The BraTS regions (WT, TC, ET) that ``label_scheme`` maps (default BraTS 2023) and one Dice per
    foreground label of ``labels`` (``Dice_{name}``; 1 when both are empty)."""
    from synthunet.dataset.label_scheme import brats_2023_scheme
    from synthunet.evaluation.metrics import brats_region_dice, dice

    scheme = label_scheme or brats_2023_scheme()
    regions = scheme.available_regions
    # the network's classes are 0..max value: one between the declared values (BraTS 2021's 3) belongs to no region
    values = brats_region_dice(reference, prediction, scheme, regions, check_values=False) if regions else {}
    for name, value in labels.items():
        if int(value) > 0:
            values[f"Dice_{name}"] = dice(reference == int(value), prediction == int(value))
    return values


def validate_segmentation(experiment, network: nn.Module, device: torch.device, folder: Path,
                          log: Callable[..., None] = print) -> dict:
    """Predict the fold's validation cases, write the label maps, ``dice.csv`` and ``summary.json``."""
    from synthunet.dataset.image_io import write_image
    from synthunet.evaluation.results_io import statistics, write_csv_atomic
    from synthunet.utilities.atomic_io import write_json_atomic
    from synthunet.prediction.probabilities import predict_probabilities
    from synthunet.preprocessing import load_case
    from synthunet.training.validation import VALIDATION_STEP_SIZE, preprocessed_geometry

    folder = Path(folder)
    _, val_cases = experiment.fold_cases()
    patch_size = list(experiment.config.patch_size)
    network.eval()
    rows = []
    for number, case_id in enumerate(val_cases):
        data, seg, properties = load_case(experiment.data_folder, case_id, mmap=True)
        inputs = np.stack([np.asarray(data[i], dtype=np.float32) for i in experiment.input_indices])
        reference = np.clip(np.asarray(seg[0]), 0, None).astype(np.uint8)
        probabilities = predict_probabilities([network], inputs, patch_size, VALIDATION_STEP_SIZE,
                                              use_mirroring=False, device=device)
        prediction = probabilities.argmax(0).numpy().astype(np.uint8)
        prediction[np.asarray(seg[0]) < 0] = 0
        write_image(prediction, preprocessed_geometry(properties, prediction.shape), folder / f"{case_id}.nii.gz")
        rows.append({"case": case_id, **label_dice(reference, prediction, experiment.labels, experiment.label_scheme)})
        log(f"validation case {number + 1}/{len(val_cases)}: {case_id} segmented")
    columns = ["case", *(k for k in rows[0] if k != "case")] if rows else ["case"]
    write_csv_atomic(folder / DICE_FILE, rows, columns)
    summary = {"task": "segmentation", "target": experiment.target, "inputs": list(experiment.inputs),
               "num_cases": len(rows), "cases": [r["case"] for r in rows],
               "grid": "preprocessed (cropped, resampled to the plans' spacing)",
               "dice": {c: statistics(r[c] for r in rows) for c in columns[1:]}}
    write_json_atomic(folder / "summary.json", summary)
    log("full-volume validation Dice: " + ", ".join(f"{c} {summary['dice'][c]['mean']:.4f}"
                                                   for c in ("WT", "TC", "ET") if c in summary["dice"]))
    return summary
