"""Adversarial recipes: pix2pix-style GAN (seed 000), the combined BraSyn recipe (seed 000) and
L2 + adversarial + gradient difference loss (seed 002).

:class:`AdversarialSynthTrainer` holds the shared step: update the discriminator on real vs.
synthesised targets (conditioned on the network input), then the generator on
``supervised loss + adversarial_weight * generator adversarial loss``.
"""
from __future__ import annotations

import torch
from torch import nn

from synthunet.architectures.model_network import inner_network
from synthunet.prediction.checkpoints import CheckpointError
from synthunet.training.losses import (ClassifierDiscriminator, PatchDiscriminator, bce_discriminator_loss,
                                       bce_generator_loss, frequency_loss, gradient_difference_loss, l2_loss,
                                       lsgan_discriminator_loss, lsgan_generator_loss, ssim_loss, tumour_weighted_l1)
from synthunet.training.trainer import SynthTrainer
from synthunet.training.trainers.pixel import PerceptualMixin

Parts = tuple[torch.Tensor, dict[str, torch.Tensor]]


class AdversarialSynthTrainer(SynthTrainer):
    """Base of the adversarial recipes (not registered itself). Subclasses set the discriminator and losses."""

    adversarial_weight = 1.0
    discriminator_betas = (0.5, 0.99)
    #: the first ``int(num_epochs * adversarial_start_fraction)`` epochs train the generator on the supervised loss
    #: alone, the discriminator idle (0: adversarial from the first step)
    adversarial_start_fraction = 0.0
    #: whether the discriminator sees the network input with the real or synthesised target (False: the target alone)
    conditional_discriminator = True

    def build_discriminator(self) -> nn.Module:
        raise NotImplementedError

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_adversarial_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initialize_recipe(self) -> None:
        super().initialize_recipe()
        self.discriminator = self.wrap_ddp(self.build_discriminator().to(self.device))
        self.discriminator_optimizer = torch.optim.Adam(self.discriminator.parameters(),
                                                        lr=self.training.initial_lr,
                                                        betas=self.discriminator_betas)
        self.schedule.optimizers.append(self.discriminator_optimizer)
        self.discriminator_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    @property
    def adversarial_start_epoch(self) -> int:
        """First epoch with the adversarial term (0 unless :attr:`adversarial_start_fraction` is set)."""
        return int(self.num_epochs * self.adversarial_start_fraction)

    def on_epoch_start(self, epoch: int) -> None:
        if self.adversarial_start_fraction > 0:
            adversarial = epoch >= self.adversarial_start_epoch
            if epoch == self.adversarial_start_epoch:
                self.log.print(f"stage 2 from epoch {epoch}: the discriminator joins "
                               f"(adversarial weight {self.adversarial_weight})")
            self.log.log(epoch, "stage", 2.0 if adversarial else 1.0)
        super().on_epoch_start(epoch)

    def score(self, critic: nn.Module, data: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The discriminator's scores for ``image``, conditioned on ``data`` when :attr:`conditional_discriminator`."""
        return critic(data, image) if self.conditional_discriminator else critic(image)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.current_epoch < self.adversarial_start_epoch:  # during training, the epoch under way
            return super().train_step(batch)
        data, target = batch["data"], batch["target"]
        with self.autocast():
            prediction = self.network(data)
        # discriminator: real and synthesised targets in one forward pass (one DDP forward per backward)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            scores = self.score(self.discriminator, torch.cat([data, data]), torch.cat([target, prediction.detach()]))
        real, fake = scores.float().chunk(2)
        d_loss = self.discriminator_loss(real, fake)
        self.optimizer_step(d_loss, self.discriminator_optimizer, self.discriminator, self.discriminator_scaler)
        # generator: the discriminator is frozen and called without its DDP wrapper
        self.optimizer.zero_grad(set_to_none=True)
        critic = inner_network(self.discriminator)
        critic.requires_grad_(False)
        try:
            with self.autocast():
                fake_scores = self.score(critic, data, prediction)
        finally:
            critic.requires_grad_(True)
        supervised, parts = self.compute_loss(prediction.float(), batch)
        adversarial = self.generator_adversarial_loss(fake_scores.float())
        loss = supervised + self.adversarial_weight * adversarial
        self.optimizer_step(loss, self.optimizer, self.network, self.grad_scaler)
        return {"loss": loss.detach(), "supervised": supervised.detach(), "adversarial": adversarial.detach(),
                "discriminator": d_loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    def recipe_state(self) -> dict:
        return {**super().recipe_state(),
                "discriminator_weights": inner_network(self.discriminator).state_dict(),
                "discriminator_optimizer_state": self.discriminator_optimizer.state_dict(),
                "discriminator_grad_scaler_state": self.discriminator_scaler.state_dict()}

    def load_recipe_state(self, checkpoint: dict) -> None:
        super().load_recipe_state(checkpoint)
        critic = inner_network(self.discriminator)
        try:
            critic.load_state_dict(checkpoint["discriminator_weights"])
        except RuntimeError:
            raise CheckpointError(f"The checkpoint's discriminator weights do not fit {type(self).__name__}'s "
                                  f"{type(critic).__name__} (written by another recipe, or before the SRGAN recipes "
                                  "took Real-ESRGAN's U-Net discriminator on 2026-12-06?): start the run again "
                                  "without --c; a finished run's checkpoint_final still predicts") from None
        self.discriminator_optimizer.load_state_dict(checkpoint["discriminator_optimizer_state"])
        self.discriminator_scaler.load_state_dict(checkpoint["discriminator_grad_scaler_state"])


class SynthTrainer_GAN(AdversarialSynthTrainer):
    """``L1 + L_adv``: LSGAN (seed 000 eq. 5-6) with a spectrally normalised PatchGAN (2D or 3D).

    The supervised part is the base recipe's L1 (inherited :meth:`compute_loss`).
    """

    #: features of the first discriminator layer (doubling per downsampling, at most 512)
    discriminator_features = {2: 64, 3: 32}

    def build_discriminator(self) -> nn.Module:
        dimension = self.experiment.dimension
        return PatchDiscriminator(self.experiment.num_input_channels + 1, dimension,
                                  self.config.patch_size,
                                  base_features=self.discriminator_features[dimension])

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return lsgan_discriminator_loss(real, fake)

    def generator_adversarial_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return lsgan_generator_loss(fake)


class SynthTrainer_CombinedNoVGG(SynthTrainer_GAN):
    """``5 L1_M + L_adv + L_SSIM + L_Freq`` (seed 000's combined recipe without the VGG term)."""

    l1m_weight = 5.0
    frequency_radius = 21.0

    def supervised_terms(self, prediction: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        target = batch["target"]
        return {"l1m": self.l1m_weight * tumour_weighted_l1(prediction, target, batch["seg"] > 0, 0.5),
                "ssim": ssim_loss(prediction, target),
                "freq": frequency_loss(prediction, target, self.frequency_radius)}

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        terms = self.supervised_terms(prediction, batch)
        return sum(terms.values()), terms


class SynthTrainer_Combined(PerceptualMixin, SynthTrainer_CombinedNoVGG):
    """``5 L1_M + L_adv + L_SSIM + L_VGG + L_Freq``: seed 000's submitted (challenge-winning) recipe."""

    def supervised_terms(self, prediction: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return {**super().supervised_terms(prediction, batch), "vgg": self.perceptual(prediction, batch["target"])}


class SynthTrainer_GDL(AdversarialSynthTrainer):
    """``lambda_2 L2 + lambda_1 L_adv + lambda_3 L_GDL`` with (1, 0.5, 1) and a BCE CNN discriminator (seed 002).

    Use ``--residual_input T1N`` (any input) for seed 002's long residual connection.
    """

    adversarial_weight = 0.5
    l2_weight = 1.0
    gdl_weight = 1.0
    discriminator_betas = (0.5, 0.999)

    def build_discriminator(self) -> nn.Module:
        return ClassifierDiscriminator(self.experiment.num_input_channels + 1, self.experiment.dimension)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return bce_discriminator_loss(real, fake)

    def generator_adversarial_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return bce_generator_loss(fake)

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        l2 = l2_loss(prediction, batch["target"])
        gdl = gradient_difference_loss(prediction, batch["target"])
        return self.l2_weight * l2 + self.gdl_weight * gdl, {"l2": l2, "gdl": gdl}


__all__ = ["AdversarialSynthTrainer", "SynthTrainer_Combined", "SynthTrainer_CombinedNoVGG", "SynthTrainer_GAN",
           "SynthTrainer_GDL"]
