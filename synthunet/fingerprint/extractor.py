"""Dataset fingerprint: what the planner and the Nyúl standardisation need to know about a raw dataset.

Written to ``$synthUNet_preprocessed/DatasetXXX_Name/dataset_fingerprint.json``; its keys are listed in
documentation/preprocessing.md ("Fingerprint").
"""
from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthunet.dataset.brain_mask import brain_mask
from synthunet.dataset.dataset_json import DatasetDescription, load_dataset_json
from synthunet.dataset.identifiers import preprocessed_dataset_folder, raw_dataset_folder
from synthunet.dataset.image_io import remove_stale_temporaries
from synthunet.dataset.raw_cases import RawCase, list_raw_cases, load_raw_case
from synthunet.dataset.validate import raise_if_invalid
from synthunet.errors import CaseError
from synthunet.preprocessing.cropping import brain_bbox
from synthunet.preprocessing.nyul import nyul_landmarks
from synthunet.utilities.atomic_io import atomic_path, write_json_atomic
from synthunet.utilities.parallel import run_parallel

FINGERPRINT_FILE = "dataset_fingerprint.json"
# Superset of the landmark percentiles a plan may ask for (Nyúl default 1, 10..90, 99; TorchIO's 25, 75; others)
FINGERPRINT_PERCENTILES: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 98, 99, 99.5)
NUM_INTENSITY_SAMPLES = 10000


def case_seed(case_id: str) -> int:
    """A reproducible random seed per case (independent of the order in which cases are processed)."""
    return zlib.crc32(case_id.encode())


def fingerprint_case(case: RawCase, channel_names: dict[int, str], percentiles: Sequence[float],
                     num_samples: int = NUM_INTENSITY_SAMPLES) -> tuple[dict, dict[str, np.ndarray]]:
    """One case's fingerprint entry and a random sample of its brain intensities per channel name."""
    loaded = load_raw_case(case)
    images = [loaded.images[c] for c in sorted(loaded.images)]
    mask = brain_mask(images, loaded.mask)
    brain_voxels = int(mask.sum())
    if brain_voxels == 0:
        source = "its brain mask in masksTr is empty" if loaded.mask is not None else "every channel is zero"
        raise CaseError(f"Case {case.case_id}: no brain voxel ({source}); fix or remove the case "
                        "(synth_validate_dataset lists every such case)")
    bbox = brain_bbox(mask)
    rng = np.random.default_rng(case_seed(case.case_id))
    sample_index = rng.integers(0, brain_voxels, size=num_samples)
    landmarks: dict[str, list[float]] = {}
    samples: dict[str, np.ndarray] = {}
    for channel, image in sorted(loaded.images.items()):
        if channel not in channel_names:
            raise CaseError(f"Case {case.case_id}: channel index {channel} is not in dataset.json")
        inside = image[mask]
        landmarks[channel_names[channel]] = [float(v) for v in nyul_landmarks(inside, None, percentiles)]
        samples[channel_names[channel]] = inside[sample_index].astype(np.float32)
    entry = {
        "spacing": [float(v) for v in loaded.geometry.spacing],
        "shape_before_cropping": [int(v) for v in loaded.geometry.shape],
        "bbox": bbox,
        "shape_after_cropping": [b - a for a, b in bbox],
        "brain_voxels": brain_voxels,
        "brain_mask_source": "masksTr" if loaded.mask is not None else "nonzero",
        "channels_present": [channel_names[c] for c in sorted(loaded.images)],
        "has_labels": loaded.label is not None,
        "labels_present": [],
        "tumour_fraction_of_brain": 0.0,
        "landmarks": landmarks,
    }
    if loaded.label is not None:
        label = np.asarray(loaded.label).astype(np.int16)
        entry["labels_present"] = [int(v) for v in np.unique(label) if v != 0]
        entry["tumour_fraction_of_brain"] = float(np.count_nonzero(label[mask]) / brain_voxels)
    return entry, samples


def _fingerprint_task(arguments: tuple) -> tuple[str, dict, dict[str, np.ndarray]]:
    case, channel_names, percentiles, num_samples = arguments
    entry, samples = fingerprint_case(case, channel_names, percentiles, num_samples)
    return case.case_id, entry, samples


def _intensity_statistics(samples: np.ndarray) -> dict:
    samples = samples.astype(np.float64)
    return {"mean": float(samples.mean()), "std": float(samples.std()), "min": float(samples.min()),
            "max": float(samples.max()), "median": float(np.median(samples)),
            "percentile_00_5": float(np.percentile(samples, 0.5)),
            "percentile_99_5": float(np.percentile(samples, 99.5)), "num_samples": int(samples.size)}


def summarise(cases: dict[str, dict], samples: dict[str, list[np.ndarray]], description: DatasetDescription,
              dataset_name: str, percentiles: Sequence[float], num_samples: int) -> dict:
    """Dataset-level fingerprint from the per-case entries."""
    case_ids = sorted(cases)
    spacings = np.array([cases[c]["spacing"] for c in case_ids], dtype=float)
    shapes_after = np.array([cases[c]["shape_after_cropping"] for c in case_ids], dtype=float)
    shapes_before = np.array([cases[c]["shape_before_cropping"] for c in case_ids], dtype=float)
    median_spacing = np.median(spacings, axis=0)
    labelled = [c for c in case_ids if cases[c]["has_labels"]]
    with_tumour = [c for c in labelled if cases[c]["labels_present"]]
    tumour_fractions = [cases[c]["tumour_fraction_of_brain"] for c in labelled]
    channel_list = description.channels
    landmarks = {name: {c: cases[c]["landmarks"][name] for c in case_ids if name in cases[c]["landmarks"]}
                 for name in channel_list}
    return {
        "dataset_name": dataset_name,
        "channel_names": {str(k): v for k, v in sorted(description.channel_names.items())},
        "label_values": sorted(description.label_values),
        "file_ending": description.file_ending,
        "num_cases": len(case_ids),
        "landmark_percentiles": [float(p) for p in percentiles],
        "spacings": spacings.tolist(),
        "shapes_after_cropping": shapes_after.astype(int).tolist(),
        "median_spacing": median_spacing.tolist(),
        "spacing_10th_percentile": np.percentile(spacings, 10, axis=0).tolist(),
        "anisotropy": float(median_spacing.max() / median_spacing.min()),
        "median_shape_before_cropping": np.median(shapes_before, axis=0).tolist(),
        "median_shape_after_cropping": np.median(shapes_after, axis=0).tolist(),
        "median_relative_size_after_cropping": float(np.median(np.prod(shapes_after, 1) / np.prod(shapes_before, 1))),
        "intensity_statistics": {name: _intensity_statistics(np.concatenate(samples[name]))
                                 for name in channel_list if samples.get(name)},
        "num_intensity_samples_per_case": int(num_samples),
        "tumour": {
            "cases_with_labels": len(labelled),
            "cases_with_tumour": len(with_tumour),
            "fraction_of_cases_with_tumour": len(with_tumour) / len(labelled) if labelled else 0.0,
            "mean_tumour_fraction_of_brain": float(np.mean(tumour_fractions)) if labelled else 0.0,
            "median_tumour_fraction_of_brain": float(np.median(tumour_fractions)) if labelled else 0.0,
        },
        "landmarks": landmarks,
        "cases": {c: {k: v for k, v in cases[c].items() if k != "landmarks"} for c in case_ids},
    }


def compute_fingerprint(raw_dataset: Path | str, num_processes: int = 2,
                        percentiles: Sequence[float] = FINGERPRINT_PERCENTILES,
                        num_samples: int = NUM_INTENSITY_SAMPLES, progress: bool = True) -> dict:
    """Fingerprint of the raw dataset folder ``raw_dataset`` (nothing is written)."""
    raw_dataset = Path(raw_dataset)
    description = load_dataset_json(raw_dataset / "dataset.json")
    raw_cases = list_raw_cases(raw_dataset, description)
    tasks = [(case, description.channel_names, tuple(percentiles), num_samples) for case in raw_cases]
    cases: dict[str, dict] = {}
    samples: dict[str, list[np.ndarray]] = {}
    for case_id, entry, case_samples in run_parallel(_fingerprint_task, tasks, num_processes, progress,
                                                     "fingerprint", name=lambda task: task[0].case_id):
        cases[case_id] = entry
        for name, values in case_samples.items():
            samples.setdefault(name, []).append(values)
    return summarise(cases, samples, description, raw_dataset.name, percentiles, num_samples)


def extract_fingerprint(dataset: str | int, num_processes: int = 2, overwrite: bool = False,
                        verify_dataset_integrity: bool = False,
                        percentiles: Sequence[float] = FINGERPRINT_PERCENTILES, progress: bool = True) -> dict:
    """Compute (or, unless ``overwrite``, reuse) and write the fingerprint of dataset ``dataset``.

    Writes ``$synthUNet_preprocessed/DatasetXXX_Name/dataset_fingerprint.json`` (atomically) and a copy of
    the raw dataset.json beside it; returns the fingerprint.
    """
    raw_dataset = raw_dataset_folder(dataset)
    if not raw_dataset.is_dir():
        raise FileNotFoundError(f"Raw dataset folder {raw_dataset} does not exist")
    if verify_dataset_integrity:
        raise_if_invalid(raw_dataset, num_processes, progress)
    output_folder = preprocessed_dataset_folder(dataset)
    output = output_folder / FINGERPRINT_FILE
    if output.is_file() and not overwrite:
        return json.loads(output.read_text())
    fingerprint = compute_fingerprint(raw_dataset, num_processes, percentiles, progress=progress)
    output_folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries([output, output_folder / "dataset.json"])  # left by a killed earlier run
    write_json_atomic(output, fingerprint, indent=1)
    copy_dataset_json(raw_dataset, output_folder)
    return fingerprint


def copy_dataset_json(raw_dataset: Path, output_folder: Path) -> None:
    """Copy dataset.json into the preprocessed folder (atomically), as nnU-Net does."""
    with atomic_path(output_folder / "dataset.json") as temporary:
        shutil.copyfile(raw_dataset / "dataset.json", temporary)
