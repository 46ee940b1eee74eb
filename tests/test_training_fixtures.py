"""Helpers for the training tests: a tiny fake preprocessed dataset and tiny plans (no tests here).

``make_preprocessed_dataset(root)`` writes, under ``root/{raw,preprocessed,results}``, a dataset
``Dataset990_TrainTiny`` whose preprocessed arrays follow documentation/architecture.md: data
``(4, z, y, x)`` float32 in about [0, 1] and 0 outside an ellipsoidal brain, seg ``(1, z, y, x)`` int8 with
-1 outside the brain and a tumour (labels 1..3) in some cases. The channels are smooth functions of one
another, so a tiny network can learn the mapping quickly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from synthunet.preprocessing.storage import save_array

DATASET = "Dataset990_TrainTiny"
CHANNELS = ("T1N", "T1C", "T2W", "T2F")
SHAPE = (20, 24, 22)


def tiny_architecture(dimension: int) -> dict:
    return {"name": "unet", "kwargs": {
        "n_stages": 2, "features_per_stage": [4, 8], "kernel_sizes": [[3] * dimension] * 2,
        "strides": [[1] * dimension, [2] * dimension], "n_conv_per_stage": 1, "n_conv_per_stage_decoder": 1,
        "norm": "instance", "nonlinearity": "leaky_relu"}}


def tiny_training(**overrides) -> dict:
    training = {"optimizer": "adamw", "initial_lr": 3e-3, "weight_decay": 1e-4, "lr_schedule": "poly",
                "num_epochs": 2, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1,
                "oversample_tumour": 0.33, "grad_clip": 12.0}
    training.update(overrides)
    return training


def tiny_plans(patch_3d=(16, 16, 16), patch_2d=(16, 16), **training) -> dict:
    common = {"data_identifier": "synthUNetPlans_3d_fullres", "spacing": [1.0, 1.0, 1.0],
              "median_shape": list(SHAPE), "batch_size": 2,
              "resampling": {"order_data": 3, "order_seg": 0, "separate_z_anisotropy_threshold": 3.0}}
    return {
        "dataset_name": DATASET, "plans_name": "synthUNetPlans",
        "channel_names": {str(i): c for i, c in enumerate(CHANNELS)}, "label_values": [0, 1, 2, 3],
        "configurations": {
            "3d_fullres": {**common, "dimension": 3, "patch_size": list(patch_3d),
                           "architecture": tiny_architecture(3), "training": tiny_training(**training)},
            "2.5d": {**common, "dimension": 2, "num_slices": 3, "slicing_axes": [0, 1, 2],
                     "patch_size": list(patch_2d), "architecture": tiny_architecture(2),
                     "training": tiny_training(**training)},
        }}


def ellipsoid(shape, radii=(0.8, 0.85, 0.75), centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) < 1


def fake_case(rng: np.random.Generator, shape=SHAPE, tumour: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(data (4, *shape) float32, seg (1, *shape) int8) of one fake preprocessed case."""
    brain = ellipsoid(shape)
    base = gaussian_filter(rng.normal(size=shape), 2.0)
    base = 0.5 + 0.2 * base / (base.std() + 1e-8)
    seg = np.where(brain, 0, -1).astype(np.int8)
    if tumour:
        centre = [rng.uniform(-0.2, 0.2) for _ in shape]
        for value, radius in ((2, 0.35), (3, 0.22), (1, 0.1)):
            seg[ellipsoid(shape, (radius,) * 3, centre) & brain] = value
    enhancing = (seg == 3).astype(np.float32)
    channels = [base, np.clip(base * 1.2 + 0.4 * enhancing, 0, None), 1.0 - base, 0.3 + 0.5 * base ** 2]
    data = np.stack(channels).astype(np.float32)
    data[:, ~brain] = 0
    return data, seg[None]


def make_preprocessed_dataset(root: Path, n_cases: int = 6, plans: dict | None = None, seed: int = 0) -> dict:
    """Write the fake dataset under ``root``; return the environment variables to set."""
    root = Path(root)
    env = {"synthUNet_raw": str(root / "raw"), "synthUNet_preprocessed": str(root / "preprocessed"),
           "synthUNet_results": str(root / "results")}
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    dataset_folder = root / "preprocessed" / DATASET
    data_folder = dataset_folder / "synthUNetPlans_3d_fullres"
    data_folder.mkdir(parents=True, exist_ok=True)
    dataset_json = {"channel_names": {str(i): c for i, c in enumerate(CHANNELS)},
                    "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3}, "numTraining": n_cases,
                    "file_ending": ".nii.gz", "name": "TrainTiny"}
    (dataset_folder / "dataset.json").write_text(json.dumps(dataset_json))
    (dataset_folder / "synthUNetPlans.json").write_text(json.dumps(plans or tiny_plans()))
    rng = np.random.default_rng(seed)
    for index in range(n_cases):
        case_id = f"case_{index:03d}"
        data, seg = fake_case(rng, tumour=index % 3 != 2)
        save_array(data, data_folder / case_id)
        save_array(seg, data_folder / f"{case_id}_seg")
        (data_folder / f"{case_id}.json").write_text(json.dumps({"case_id": case_id}))
    return env


def set_environment(monkeypatch, env: dict) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")


def prepare(tmp_path: Path, monkeypatch, n_cases: int = 6, plans: dict | None = None) -> dict:
    """Write the fake dataset under ``tmp_path`` and point the synthUNet folders (and 0 workers) at it."""
    env = make_preprocessed_dataset(tmp_path, n_cases=n_cases, plans=plans)
    set_environment(monkeypatch, env)
    return env


def seed_everything(seed: int = 0) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Interrupted(Exception):
    """Raised by ``run_training(..., interrupt_at=n)`` in the n-th call of ``train_step``."""


def run_training(trainer, interrupt_at: int | None = None, resume: bool = False) -> None:
    """``trainer.run_training(continue_training=resume)``; with ``interrupt_at``, the run dies (``Interrupted``)
    in the ``interrupt_at``-th training step, as an interrupted job would."""
    if interrupt_at is not None:
        original, calls = trainer.train_step, []

        def failing_step(batch):
            calls.append(1)
            if len(calls) == interrupt_at:
                raise Interrupted
            return original(batch)

        trainer.train_step = failing_step
    trainer.run_training(continue_training=resume)


@pytest.fixture
def single_thread():
    """Run torch on one thread: tiny networks are much faster so (and the test machines share few cores)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
