"""Super-resolution GAN recipes (seed 004): ``L_P + lambda L_G + eta L_1`` with Real-ESRGAN's weights.

Seed 004 (Table 1, §3.8.4-3.8.5) gives the generator loss of ESRGAN, BSRGAN and Real-ESRGAN as
``L_P + lambda L_G + eta L_1`` and, for Real-ESRGAN (the model it applies to BraTS, §6.1.2) and BSRGAN,
``lambda = 0.1``, ``eta = 1``. ``L_G`` is the standard (non-saturating) GAN loss of its eq. 2-3, i.e. binary
cross entropy on the discriminator's logits; Real-ESRGAN stabilises it with spectral normalisation, which
the PatchGAN of :class:`SynthTrainer_GAN` has on every conv, so that discriminator is reused (conditional on
the network input, like every adversarial recipe here). ``L_P`` is the VGG-19 feature loss of
:class:`~synthunet.training.trainers.pixel.SynthTrainer_Perceptual` (seed 004 eq. 1 names no layer; seed
000's layers and weights are used). The discriminator's Adam uses Real-ESRGAN's betas (0.9, 0.99); the
generator keeps the plans' optimiser and schedule, as every recipe. See documentation/trainers/super_resolution.md.
"""
from __future__ import annotations

import torch

from synthunet.training.losses import bce_discriminator_loss, bce_generator_loss, l1_loss
from synthunet.training.trainers.adversarial import SynthTrainer_GAN
from synthunet.training.trainers.pixel import PerceptualMixin

Parts = tuple[torch.Tensor, dict[str, torch.Tensor]]


class SynthTrainer_SRGANNoVGG(SynthTrainer_GAN):
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
