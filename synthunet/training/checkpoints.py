"""Checkpoints: atomic saving, safe loading (``weights_only=True``), RNG states, and loading a trained
model for inference (:func:`load_trained_model`).

A checkpoint is a dict of tensors and plain Python types only (documentation/model_folder_format.md).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthunet.dataset.image_io import temporary_sibling
from synthunet.training.network import build_synthesis_network, inner_network

CHECKPOINT_LATEST = "checkpoint_latest.pth"
CHECKPOINT_BEST = "checkpoint_best.pth"
CHECKPOINT_FINAL = "checkpoint_final.pth"


class CheckpointError(FileNotFoundError):
    """A checkpoint or model folder is missing or unusable."""


def save_checkpoint(content: dict, path: Path | str) -> None:
    """``torch.save`` under a temporary name in the same folder, then ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        torch.save(content, temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=True)


def capture_rng_state() -> dict:
    """RNG states of torch (CPU and CUDA), NumPy's global generator and Python's ``random``, as plain types."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [str(kind), [int(k) for k in keys], int(position), int(has_gauss), float(cached)],
             "python": [int(version), [int(v) for v in internal], gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def read_model_info(model_folder: Path | str) -> tuple[dict, dict]:
    """(model_info, plans) of a trained model folder."""
    model_folder = Path(model_folder)
    files = {name: model_folder / name for name in ("model_info.json", "plans.json")}
    for path in files.values():
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist; is {model_folder} a synthUNet model folder "
                                  "(.../Trainer__Plans__configuration__TARGET)?")
    return json.loads(files["model_info.json"].read_text()), json.loads(files["plans.json"].read_text())


def load_trained_model(model_folder: Path | str, fold: int | str, device: str | torch.device = "cpu",
                       checkpoint_name: str = CHECKPOINT_FINAL) -> tuple[nn.Module, dict, dict]:
    """Load a trained generator for inference: ``(network in eval mode on device, model_info, plans)``.

    The network takes the input layout described in documentation/model_folder_format.md and already
    includes the residual connection when ``model_info["residual_input"]`` is set.
    """
    model_info, plans = read_model_info(model_folder)
    config = plans["configurations"][model_info["configuration"]]
    network = build_synthesis_network(config, model_info["inputs"], int(model_info.get("num_slices", 1)),
                                      model_info.get("residual_input"))
    checkpoint = load_checkpoint(Path(model_folder) / f"fold_{fold}" / checkpoint_name, map_location="cpu")
    inner_network(network).load_state_dict(checkpoint["network_weights"])
    return network.to(device).eval(), model_info, plans
