"""Checkpoints: atomic saving, safe loading (``weights_only=True``), and loading a trained model for
inference (:func:`load_trained_model`, :func:`load_trained_segmenter`).

A checkpoint is a dict of tensors and plain Python types only (documentation/model_folder_format.md).
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from synthunet.architectures.model_network import (build_segmentation_network, build_synthesis_network,
                                                   inner_network)
from synthunet.errors import InputError, SynthUNetError
from synthunet.plans import as_plans
from synthunet.utilities.atomic_io import atomic_path

CHECKPOINT_LATEST = "checkpoint_latest.pth"
#: the checkpoint_latest before the last one (``--c`` falls back to it when checkpoint_latest is damaged)
CHECKPOINT_PREVIOUS = "checkpoint_latest_previous.pth"
CHECKPOINT_BEST = "checkpoint_best.pth"
CHECKPOINT_FINAL = "checkpoint_final.pth"


class CheckpointError(SynthUNetError, FileNotFoundError):
    """A checkpoint or model folder is missing, corrupt, or not a synthUNet checkpoint."""

    hint = ("copy the model folder again, or train the fold again (synth_train ... --c resumes from the last "
            "checkpoint)")


#: what every synthUNet checkpoint holds; resuming a training needs more (see Trainer.load)
CHECKPOINT_KEYS = ("network_weights",)


def save_checkpoint(content: dict, path: Path | str, keep_previous: Path | str | None = None) -> None:
    """``torch.save`` under a temporary name in the same folder, then ``os.replace`` (never half-written).

    ``keep_previous``: once the new file is complete, the file it replaces is renamed to this name (which
    always holds the checkpoint before the current one)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(content, temporary)
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)  # the current file becomes the previous one; the new one follows


def _torch_reason(error: Exception) -> str:
    """The first sentence of a torch.load error, never torch's advice to load with weights_only=False."""
    text = str(error).strip().split("\n")[0]
    text = text.split(". ")[0].rstrip(".")
    if not text or "weights_only" in text or "Weights only" in text:
        return type(error).__name__
    return text


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu",
                    required: Sequence[str] = CHECKPOINT_KEYS) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain Python values only: no code from the
    file ever runs); check that it is a dict holding ``required``.

    Every problem is a :class:`CheckpointError` naming the file: missing, empty, truncated or corrupt, holding
    other Python objects (refused, never loaded), or not a synthUNet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes); it was not written completely")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"Checkpoint {path} is not a synthUNet checkpoint: it is not a PyTorch file of tensors "
                              "and plain Python values (synthUNet refuses other content and never runs code from "
                              "a checkpoint)") from None
    except EOFError:
        raise CheckpointError(f"Checkpoint {path} is truncated: it ends early") from None
    except Exception as error:  # noqa: BLE001 - whatever the file makes torch.load raise, the file is at fault
        raise CheckpointError(f"Checkpoint {path} is corrupt or not a PyTorch checkpoint "
                              f"({_torch_reason(error)})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"Checkpoint {path} is not a synthUNet checkpoint: it holds a "
                              f"{type(content).__name__}, not a dict")
    missing = [key for key in required if key not in content]
    if missing:
        raise CheckpointError(f"Checkpoint {path} is not a synthUNet checkpoint of this kind: it has no "
                              f"{', '.join(repr(k) for k in missing)} (entries: {', '.join(map(str, content)) or 'none'})")
    return content


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
    config = as_plans(plans, str(Path(model_folder) / "plans.json")).configuration(model_info["configuration"])
    network = build_synthesis_network(config, model_info["inputs"], int(model_info.get("num_slices", 1)),
                                      model_info.get("residual_input"))
    path = Path(model_folder) / f"fold_{fold}" / checkpoint_name
    load_network_weights(inner_network(network), load_checkpoint(path, map_location="cpu"), path)
    return network.to(device).eval(), model_info, plans


def load_trained_segmenter(model_folder: Path | str, fold: int | str, device: str | torch.device = "cpu",
                           checkpoint_name: str = CHECKPOINT_FINAL) -> tuple[nn.Module, dict, dict]:
    """``(network in eval mode on device, model_info, plans)`` of a trained segmenter (``weights_only`` loading)."""
    model_info, plans = read_model_info(model_folder)
    if model_info.get("task") != "segmentation":
        raise InputError(f"{model_folder} is not a segmentation model folder (model_info.json has no "
                         f"\"task\": \"segmentation\")")
    config = as_plans(plans, str(Path(model_folder) / "plans.json")).configuration(model_info["configuration"])
    network = build_segmentation_network(config, len(model_info["inputs"]), int(model_info["num_classes"]))
    path = Path(model_folder) / f"fold_{fold}" / checkpoint_name
    load_network_weights(network, load_checkpoint(path, map_location="cpu"), path)
    return network.to(device).eval(), model_info, plans


def load_network_weights(network: nn.Module, checkpoint: dict, path: Path | str) -> None:
    """``network.load_state_dict(checkpoint["network_weights"])``; a checkpoint of another network is a
    :class:`CheckpointError` naming the file."""
    try:
        network.load_state_dict(checkpoint["network_weights"])
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"Checkpoint {path} does not fit the network its model folder describes ({first}); "
                              "was it copied from another model?") from None
