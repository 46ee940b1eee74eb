"""Trained model folders (documentation/model_folder_format.md): naming, finding and reading them, loading their
networks. Training writes them, inference and model sharing read them."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from synthunet.dataset.dataset_json import DatasetDescription, load_dataset_json
from synthunet.dataset.identifiers import DEFAULT_PLANS
from synthunet.dataset.super_resolution import LOW_RESOLUTION_SUFFIX
from synthunet.errors import SynthUNetError
from synthunet.plans import ConfigurationPlan, Plans, PlansError, as_plans
from synthunet.prediction.checkpoints import CHECKPOINT_FINAL, load_trained_model

DEFAULT_TRAINER = "SynthTrainer"
DEFAULT_CONFIGURATION = "3d_fullres"
DEFAULT_CHECKPOINT = CHECKPOINT_FINAL
MODEL_INFO_FILE = "model_info.json"
#: reserved TARGET: "every sequence in, tumour label map out" (a downstream segmenter, SegmentationTrainer)
SEGMENTATION_TARGET = "seg"
_FOLD_PATTERN = re.compile(r"^fold_(\d+|all)$")


class ModelFolderError(SynthUNetError, ValueError):
    """A model folder is missing, incomplete, or lacks the requested folds or checkpoint."""

    hint = "documentation/model_folder_format.md describes a trained model folder"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFolderError(f"{path} does not exist; {path.parent} is not a complete synthUNet model folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelFolderError(f"{path} is not valid JSON: {error}") from error


def parse_fold(value: str | int) -> int | str:
    """``0``/``"0"`` -> 0, ``"all"`` -> ``"all"``."""
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if text.isdigit():
        return int(text)
    raise ModelFolderError(f"FOLD must be a fold number (0-4 with the default 5-fold split) or 'all', got {value!r}")


@dataclass
class ModelFolder:
    """What inference needs from one model folder: plans, dataset, target, inputs, configuration."""

    path: Path
    plans: Plans
    dataset: DatasetDescription
    model_info: dict

    @classmethod
    def load(cls, path: Path | str) -> "ModelFolder":
        path = Path(path)
        if not path.is_dir():
            raise ModelFolderError(f"Model folder {path} does not exist")
        plans_file = path / "plans.json"
        try:
            plans = as_plans(_read_json(plans_file), str(plans_file))
        except PlansError as error:
            raise ModelFolderError(str(error)) from error
        folder = cls(path, plans, load_dataset_json(path / "dataset.json"), _read_json(path / MODEL_INFO_FILE))
        folder.check()
        return folder

    def check(self) -> None:
        """Raise :class:`ModelFolderError` unless the files agree: the configuration is in plans.json, and the
        target and inputs are channels of dataset.json."""
        self._check_files("channels", [self.target, *self.inputs])

    def _check_files(self, what: str, channels: Sequence[str]) -> None:
        if self.configuration not in self.plans.configurations:
            raise ModelFolderError(f"{self.path}: configuration {self.configuration!r} is not in its plans.json")
        try:
            self.config.check_trainable(f"{self.path / 'plans.json'}: configurations.{self.configuration}")
        except PlansError as error:
            raise ModelFolderError(str(error)) from error
        unknown = [c for c in channels if c not in self.dataset.channels]
        if unknown:
            raise ModelFolderError(f"{self.path}: model_info.json names {what} {unknown} that dataset.json does not "
                                   f"have ({', '.join(self.dataset.channels)})")

    @property
    def target(self) -> str:
        return str(self.model_info["target"])

    @property
    def inputs(self) -> list[str]:
        return [str(c) for c in self.model_info["inputs"]]

    @property
    def configuration(self) -> str:
        return str(self.model_info["configuration"])

    @property
    def config(self) -> ConfigurationPlan:
        """The plans block of this model's configuration."""
        return self.plans.configuration(self.configuration)

    @property
    def dimension(self) -> int:
        return self.config.dimension

    @property
    def is_25d(self) -> bool:
        return self.dimension == 2

    @property
    def num_slices(self) -> int:
        return int(self.model_info.get("num_slices", self.config.num_slices)) if self.is_25d else 1

    @property
    def slicing_axes(self) -> list[int]:
        return [int(a) for a in self.model_info.get("slicing_axes", self.config.slicing_axes)]

    @property
    def residual_input(self) -> str | None:
        value = self.model_info.get("residual_input")
        return str(value) if value else None

    @property
    def patch_size(self) -> list[int]:
        return list(self.config.patch_size)

    @property
    def export_landmarks_from(self) -> str | None:
        """The input whose own landmarks the prediction is exported with: ``{TARGET}_LR`` when dataset.json says
        the dataset is a super-resolution task for the target (``synth_make_sr_dataset``), else ``None`` (the
        plans' reference landmarks)."""
        path = self.path / "dataset.json"
        block = _read_json(path).get("super_resolution") if path.is_file() else None
        source = f"{self.target}{LOW_RESOLUTION_SUFFIX}"
        if isinstance(block, dict) and block.get("sequence") == self.target and source in self.inputs:
            return source
        return None

    @property
    def tile_divisor(self) -> list[int] | None:
        """The U-Net's total stride per spatial axis (inference windows must be multiples of it); ``None`` for
        other architectures, which are predicted with their training patch."""
        architecture = self.config.architecture
        strides = architecture.kwargs.get("strides")
        if architecture.name != "unet" or not strides:
            return None
        return [int(np.prod([stride[axis] for stride in strides])) for axis in range(len(strides[0]))]

    @property
    def network_input_channels(self) -> int:
        return len(self.inputs) * self.num_slices

    def available_folds(self, checkpoint: str = DEFAULT_CHECKPOINT) -> list[int | str]:
        """Folds with a ``fold_X/{checkpoint}`` file, numbers first, then ``all``."""
        folds: list[int | str] = []
        for child in sorted(self.path.iterdir()):
            match = _FOLD_PATTERN.match(child.name)
            if match and (child / checkpoint).is_file():
                folds.append(parse_fold(match.group(1)))
        return sorted(folds, key=lambda f: (isinstance(f, str), f if isinstance(f, int) else 0))

    def resolve_folds(self, folds: Sequence[int | str] | None, checkpoint: str = DEFAULT_CHECKPOINT) -> list[int | str]:
        """The requested folds, checked to exist; ``None`` = every numbered fold present (else ``all``)."""
        available = self.available_folds(checkpoint)
        if folds is None:
            numbered = [f for f in available if isinstance(f, int)]
            chosen = numbered or available
            if not chosen:
                raise ModelFolderError(f"{self.path} holds no fold_X/{checkpoint}; has this model been trained "
                                       f"(synth_train ... {self.target})?")
            return chosen
        chosen = [parse_fold(f) for f in folds]
        missing = [f for f in chosen if f not in available]
        if missing:
            raise ModelFolderError(
                f"{self.path}: no {checkpoint} for fold(s) {', '.join(map(str, missing))} (available: "
                f"{', '.join(map(str, available)) or 'none'}). Train them or pass -f with available folds.")
        return chosen

    def checkpoint_path(self, fold: int | str, checkpoint: str = DEFAULT_CHECKPOINT) -> Path:
        return self.path / f"fold_{fold}" / checkpoint


def model_folder_name(trainer: str, plans: str, configuration: str, target: str) -> str:
    """``{Trainer}__{Plans}__{configuration}__{TARGET}``."""
    return f"{trainer}__{plans}__{configuration}__{target}"


def find_model_folders(results_dataset_folder: Path | str, trainer: str = DEFAULT_TRAINER,
                       plans: str = DEFAULT_PLANS, configuration: str = DEFAULT_CONFIGURATION) -> dict[str, Path]:
    """Target name -> model folder for every ``{trainer}__{plans}__{configuration}__{TARGET}`` folder."""
    folder = Path(results_dataset_folder)
    prefix = model_folder_name(trainer, plans, configuration, "")
    if not folder.is_dir():
        return {}
    return {child.name[len(prefix):]: child for child in sorted(folder.iterdir())
            if child.is_dir() and child.name.startswith(prefix) and len(child.name) > len(prefix)}


def load_network(model: ModelFolder, fold: int | str, checkpoint: str = DEFAULT_CHECKPOINT,
                 device: torch.device | str = "cpu") -> nn.Module:
    """The trained generator of one fold in eval mode on ``device`` (with its residual input, if any).

    Delegates to :func:`synthunet.prediction.checkpoints.load_trained_model` (``weights_only=True`` loading).
    """
    path = model.checkpoint_path(fold, checkpoint)
    if not path.is_file():
        raise ModelFolderError(f"Checkpoint {path} does not exist")
    network, _, _ = load_trained_model(model.path, fold, device, checkpoint_name=checkpoint)
    return network
