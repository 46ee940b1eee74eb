"""Stand-ins for tests and benchmarks: trivial networks and model folders that follow the contract."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from synthunet.dataset.brats_layout import BRATS_CHANNEL_NAMES
from synthunet.plans import DEFAULT_PLANS, as_plans


class ConstantNetwork(nn.Module):
    """Returns ``value`` everywhere: ``(B, C, *patch)`` -> ``(B, 1, *patch)``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.value, dtype=x.dtype, device=x.device)


class ChannelNetwork(nn.Module):
    """Returns input channel ``channel`` (times ``scale``): an identity "network" for geometry tests."""

    def __init__(self, channel: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        self.channel = int(channel)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channel:self.channel + 1] * self.scale


def tiny_architecture(dimension: int) -> dict:
    """A two-stage plain U-Net block for plans, small enough for unit tests."""
    return {"name": "unet", "kwargs": {"n_stages": 2, "features_per_stage": [4, 8],
                                       "kernel_sizes": [[3] * dimension] * 2,
                                       "strides": [[1] * dimension, [2] * dimension],
                                       "n_conv_per_stage": 1, "n_conv_per_stage_decoder": 1,
                                       "norm": "instance", "nonlinearity": "leaky_relu"}}


def identity_normalization(channels: Sequence[str]) -> dict:
    """A Nyúl block whose standard scale equals the reference landmarks (percentiles 1, 50, 99)."""
    scale = [0.0, 50.0, 100.0]
    return {"scheme": "nyul", "landmark_percentiles": [1, 50, 99], "standard_scale_range": [0, 100],
            "range_divisor": 100.0, "standard_scales": {c: list(scale) for c in channels},
            "reference_landmarks": {c: list(scale) for c in channels}}


def fake_plans(patch_size_3d: Sequence[int] = (16, 16, 16), patch_size_2d: Sequence[int] = (16, 16),
               spacing: Sequence[float] = (1.0, 1.0, 1.0), channels: dict[str, str] | None = None,
               num_slices: int = 3) -> dict:
    """A plans dict with ``3d_fullres`` and ``2.5d`` configurations (tiny networks)."""
    channels = dict(channels or BRATS_CHANNEL_NAMES)
    resampling = {"order_data": 3, "order_seg": 0, "separate_z_anisotropy_threshold": 3.0}
    return {"dataset_name": "Dataset999_Fake", "plans_name": DEFAULT_PLANS, "channel_names": channels,
            "label_values": [], "normalization": identity_normalization(list(channels.values())),
            "configurations": {
                "3d_fullres": {"dimension": 3, "data_identifier": "synthUNetPlans_3d_fullres", "spacing": list(spacing),
                               "patch_size": list(patch_size_3d), "batch_size": 2, "resampling": resampling,
                               "architecture": tiny_architecture(3)},
                "2.5d": {"dimension": 2, "num_slices": num_slices, "slicing_axes": [0, 1, 2],
                         "data_identifier": "synthUNetPlans_3d_fullres", "spacing": list(spacing),
                         "patch_size": list(patch_size_2d), "batch_size": 8, "resampling": resampling,
                         "architecture": tiny_architecture(2)}}}


def write_model_folder(results_dataset_folder: Path | str, target: str, configuration: str = "3d_fullres",
                       plans: dict | None = None, inputs: Sequence[str] | None = None,
                       folds: Sequence[int | str] = (0,), trainer: str = "SynthTrainer",
                       write_checkpoints: bool = True, seed: int = 0) -> Path:
    """Create ``{trainer}__{plans}__{configuration}__{target}`` with plans, dataset.json, model_info.json and
    (optionally) randomly initialised ``checkpoint_final.pth`` files per fold."""
    plans = plans or fake_plans()
    typed = as_plans(plans)
    inputs = list(inputs or [c for c in typed.channels if c != target])
    config = typed.configuration(configuration)
    folder = Path(results_dataset_folder) / f"{trainer}__{typed.plans_name}__{configuration}__{target}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": plans["channel_names"], "numTraining": 1,
                                                     "file_ending": ".nii.gz", "name": "Fake"}))
    info = {"trainer": trainer, "plans_name": typed.plans_name, "configuration": configuration, "target": target,
            "inputs": inputs, "residual_input": None}
    if config.is_2p5d:
        info["num_slices"] = config.num_slices
        info["slicing_axes"] = list(config.slicing_axes)
    (folder / "model_info.json").write_text(json.dumps(info, indent=1))
    if write_checkpoints:
        from synthunet.architectures.model_network import build_synthesis_network

        for fold in folds:
            torch.manual_seed(seed + hash(str(fold)) % 1000)
            network = build_synthesis_network(config, inputs, int(info.get("num_slices", 1)))
            fold_folder = folder / f"fold_{fold}"
            fold_folder.mkdir(exist_ok=True)
            torch.save({"network_weights": network.state_dict(), "epoch": 0, "trainer": trainer, "target": target,
                        "inputs": inputs, "configuration": configuration}, fold_folder / "checkpoint_final.pth")
    return folder
