"""Super-resolution GAN recipes (seed 004): ``L_P + lambda L_G + eta L_1`` with Real-ESRGAN's weights.

Seed 004 (Table 1, §3.8.4-3.8.5) gives the generator loss of ESRGAN, BSRGAN and Real-ESRGAN as
``L_P + lambda L_G + eta L_1`` and, for Real-ESRGAN (the model it applies to BraTS, §6.1.2) and BSRGAN,
``lambda = 0.1``, ``eta = 1``. ``L_G`` is the standard (non-saturating) GAN loss of its eq. 2-3, i.e. binary
cross entropy on the discriminator's logits. The discriminator is Real-ESRGAN's U-Net with spectral
normalisation (:class:`~synthunet.training.losses.UNetDiscriminator`), unconditional as there and as wide as
the generator (Real-ESRGAN: 64 features each); plan with ``--gan realesrgan``, which charges it in the
adversarial 30 % of the steps. ``L_P`` is the VGG-19 feature loss of
:class:`~synthunet.training.trainers.pixel.SynthTrainer_Perceptual` (seed 004 eq. 1 names no layer; seed
000's layers and weights are used). The discriminator's Adam uses Real-ESRGAN's betas (0.9, 0.99); the
generator keeps the plans' optimiser and schedule, as every recipe. See documentation/trainers/super_resolution.md.
"""
from __future__ import annotations

import torch
from torch import nn

from synthunet.training.losses import UNetDiscriminator, bce_discriminator_loss, bce_generator_loss, l1_loss
from synthunet.training.trainers.adversarial import AdversarialSynthTrainer
from synthunet.training.trainers.pixel import PerceptualMixin

Parts = tuple[torch.Tensor, dict[str, torch.Tensor]]


class SynthTrainer_SRGANNoVGG(AdversarialSynthTrainer):
    """``eta L1 + lambda L_G`` with eta = 1, lambda = 0.1 (seed 004's Real-ESRGAN weights, without ``L_P``)."""

    adversarial_weight = 0.1
    l1_weight = 1.0
    discriminator_betas = (0.9, 0.99)
    #: Real-ESRGAN fine-tunes an already trained generator adversarially (seed 004 §3.8.5: 400k iterations at lr
    #: 1e-4; its own paper trains that L1 generator for 1,000k first): the first 70 % of the epochs are the L1 stage
    adversarial_start_fraction = 0.7
    #: Real-ESRGAN keeps an EMA of the generator in both stages (its training options: ``ema_decay: 0.999``) and
    #: releases the averaged weights; ``checkpoint_final`` holds the average here too
    ema_decay = 0.999
    #: Real-ESRGAN's discriminator scores the image alone
    conditional_discriminator = False

    def build_discriminator(self) -> nn.Module:
        return UNetDiscriminator(1, self.experiment.dimension, self.config.patch_size,
                                 base_features=self.config.architecture.base_features)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return bce_discriminator_loss(real, fake)

    def generator_adversarial_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return bce_generator_loss(fake)

    def supervised_terms(self, prediction: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return {"l1": self.l1_weight * l1_loss(prediction, batch["target"])}

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        terms = self.supervised_terms(prediction, batch)
        return sum(terms.values()), terms


class SynthTrainer_SRGAN(PerceptualMixin, SynthTrainer_SRGANNoVGG):
    """``L_P + 0.1 L_G + L1`` (seed 004, Real-ESRGAN's weights); needs local VGG-19 weights."""

    perceptual_weight = 1.0

    def supervised_terms(self, prediction: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return {**super().supervised_terms(prediction, batch),
                "vgg": self.perceptual_weight * self.perceptual(prediction, batch["target"])}


__all__ = ["SynthTrainer_SRGAN", "SynthTrainer_SRGANNoVGG"]
