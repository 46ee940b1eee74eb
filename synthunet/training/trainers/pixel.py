"""Recipes that only change the supervised loss (seed 000): masked L1, L1 + SSIM, L1 + frequency,
L1 + VGG perceptual loss."""
from __future__ import annotations

import torch

from synthunet.training.losses import (PerceptualLoss, frequency_loss, l1_loss, load_vgg19_features, ssim_loss,
                                       tumour_weighted_l1)
from synthunet.training.losses.perceptual import resolve_vgg_weights
from synthunet.training.trainer import SynthTrainer

Parts = tuple[torch.Tensor, dict[str, torch.Tensor]]


class SynthTrainer_L1Masked(SynthTrainer):
    """``L1_M = w L1_tumour + (1 - w) L1_healthy`` with w = 0.5 (seed 000 eq. 2-4)."""

    tumour_weight = 0.5

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        return tumour_weighted_l1(prediction, batch["target"], batch["seg"] > 0, self.tumour_weight), {}


class SynthTrainer_L1SSIM(SynthTrainer):
    """``L1 + (1 - SSIM)`` with the Gaussian 11-voxel SSIM window (seed 000 eq. 7)."""

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        l1, structural = l1_loss(prediction, batch["target"]), ssim_loss(prediction, batch["target"])
        return l1 + structural, {"l1": l1, "ssim": structural}


class SynthTrainer_Freq(SynthTrainer):
    """``L1 + L_Freq`` (seed 000 eq. 8), low/high split at radius 21 (circle in 2D, sphere in 3D)."""

    frequency_radius = 21.0

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        l1 = l1_loss(prediction, batch["target"])
        frequency = frequency_loss(prediction, batch["target"], self.frequency_radius)
        return l1 + frequency, {"l1": l1, "freq": frequency}


class PerceptualMixin:
    """Loads the frozen VGG-19 for recipes with a perceptual term (``vgg_weights`` option or env variable)."""

    extra_options = ("vgg_weights",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        resolve_vgg_weights(self.options.get("vgg_weights"))  # fail before training starts

    def initialize_recipe(self) -> None:
        super().initialize_recipe()
        self.perceptual = PerceptualLoss(load_vgg19_features(self.options.get("vgg_weights"))).to(self.device)


class SynthTrainer_Perceptual(PerceptualMixin, SynthTrainer):
    """``L1 + L_VGG``: VGG-19 conv layers 2, 7, 14, 21, 28 with lambda 2e-4, 1e-4, 1e-4, 2e-4, 5e-4 (seed 000)."""

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        l1, vgg = l1_loss(prediction, batch["target"]), self.perceptual(prediction, batch["target"])
        return l1 + vgg, {"l1": l1, "vgg": vgg}
