"""Unpaired translation (seed 003, AN-GAN): ``SynthTrainer_ANGAN``, a CycleGAN with LSGAN losses, two 70x70
PatchGANs (instance-normalised, as CycleGAN's) and cycle consistency, trained on batches whose source and target
patches come from different cases.

Domains: A = the source stacks (``k`` slices of every input, what the synthesis network reads), B = the
target's central slice. G: A -> B is the ordinary synthesis network of the plans (``self.network``; with
``synthUNetPlans_angan`` the AN generator), so its checkpoint is used by ``synth_predict`` unchanged.
R: B -> A is the same architecture from 1 channel to ``k x inputs``; D_B judges B slices, D_A judges A
stacks (unconditional: unpaired data has no condition). Per step (seed eq. 1-5, LSGAN as the seed's
experiments):

    generators (D frozen):  L_G = E (D_B(G(a)) - 1)^2 + E (D_A(R(b)) - 1)^2
                                  + lambda (E |R(G(a)) - a| + E |G(R(b)) - b|)        lambda = 10
                                  [+ lambda_id L_identity, off by default]
    discriminators:         L_D = E (D_B(b) - 1)^2 + E D_B(G(a))^2 + E (D_A(a) - 1)^2 + E D_A(R(b))^2

Every generator output is set to 0 wherever its input is 0 in every channel (:func:`on_support`; outside the
brain), as ``synth_predict`` exports it. Without that the discriminators tell real from synthesised patches by
the background alone (real: exactly 0; synthesised: small non-zero values); measured on a tiny unpaired problem
with a known mapping, G then collapsed to about 0 inside the brain (benchmarks/unpaired_toy.py).

See documentation/unpaired.md.
"""
from __future__ import annotations

import torch
from torch import nn

from synthunet.architectures import build_network
from synthunet.architectures.baselines import on_support
from synthunet.plans import TrainingPlan
from synthunet.training.data import CaseCache, PatchSampler, UnpairedTrainingBatches, unpaired_batch
from synthunet.training.experiment import Experiment, ExperimentError
from synthunet.training.losses import (PatchDiscriminator, l1_loss, lsgan_discriminator_loss, lsgan_generator_loss,
                                       patchgan_receptive_field)
from synthunet.training.optim import build_optimizer
from synthunet.training.trainer import SynthTrainer

#: the receptive field of pix2pix's PatchGAN the seed uses
PATCHGAN_FIELD = 70


class SynthTrainer_ANGAN(SynthTrainer):
    """Unpaired CycleGAN of seed 003 (``--unpaired``): G: A -> B (the model), R: B -> A, D_A, D_B.

    Unpaired is what this recipe is: ``--unpaired`` (option ``unpaired=True``) states it on the command line
    and may be left out; ``unpaired=False`` is an error. One process only (no DDP), 2.5d configurations only.
    """

    #: marks recipes that train on unpaired batches (``synth_train --unpaired`` accepts only these)
    unpaired = True
    cycle_weight = 10.0
    #: identity loss weight (0: off, as the seed); see :meth:`identity_loss`
    identity_weight = 0.0
    #: PatchGAN width (pix2pix's 64), normalisation, initial learning rate and Adam betas (CycleGAN's). With the
    #: paired recipes' spectral norm D_B stayed at chance (loss 0.50) against the histogram-matching start on
    #: Dataset501, so G got no adversarial signal; instance norm at 2e-4 separates them, at 1e-3 it did not
    #: (documentation/unpaired.md). The rate follows the plans' schedule; None: the plans' rate.
    discriminator_features = 64
    discriminator_norm = "instance"
    discriminator_lr: float | None = 2e-4
    discriminator_betas = (0.5, 0.999)
    #: an optimiser for G and R instead of the plans' (e.g. CycleGAN's ``{"initial_lr": 2e-4, "betas":
    #: [0.5, 0.999]}``; measured no better at 4 CPU minutes, documentation/unpaired.md); None: the plans' optimiser.
    #: D_A and D_B follow ``discriminator_lr`` (or, when it is None, this rate)
    optimiser: dict | None = None
    #: set every generator output to 0 outside its source's support (:func:`on_support`); False only to measure
    #: what it prevents (benchmarks/unpaired_toy.py)
    support_mask = True

    def __init__(self, experiment: Experiment, *args, unpaired: bool = True, **kwargs) -> None:
        if unpaired is not True:
            raise ExperimentError(f"{type(self).__name__} trains on unpaired batches only (unpaired=False given)")
        super().__init__(experiment, *args, **kwargs)
        if self.optimiser:
            self.training = TrainingPlan.from_dict({**self.training.to_dict(), **self.optimiser},
                                                   f"{type(self).__name__}.optimiser")
        if self.world_size > 1:
            raise ExperimentError(f"{type(self).__name__} runs in one process; --num_gpus > 1 is not supported")
        if not experiment.is_2p5d:
            raise ExperimentError(f"{type(self).__name__} trains 2.5d configurations (2D slices, as seed 003), "
                                  f"not {experiment.configuration}")

    # ================================================================ setup
    def initialize_recipe(self) -> None:
        super().initialize_recipe()
        e, lr = self.experiment, self.training.initial_lr
        patch = self.config.patch_size
        self.reverse = build_network(self.config.architecture, 1, e.num_input_channels,
                                     dimension=e.dimension).to(self.device)
        self.reverse_optimizer = build_optimizer(self.reverse.parameters(), self.training)
        self.discriminator_a = PatchDiscriminator(e.num_input_channels, e.dimension, patch,
                                                  self.discriminator_features, tail_kernel=4,
                                                  norm=self.discriminator_norm).to(self.device)
        self.discriminator_b = PatchDiscriminator(1, e.dimension, patch, self.discriminator_features,
                                                  tail_kernel=4, norm=self.discriminator_norm).to(self.device)
        scale = self.discriminator_lr / lr if self.discriminator_lr else 1.0
        self.discriminator_optimizers = [torch.optim.Adam([{"params": d.parameters(), "lr_scale": scale}],
                                                          lr=lr * scale, betas=self.discriminator_betas)
                                         for d in (self.discriminator_a, self.discriminator_b)]
        self.schedule.optimizers += [self.reverse_optimizer, *self.discriminator_optimizers]
        self.discriminator_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        field = patchgan_receptive_field(self.discriminator_b)
        if field != PATCHGAN_FIELD:
            self.log.print(f"note: the patch {list(patch)} is small for a 70x70 PatchGAN; the discriminators use "
                           f"fewer downsamplings (receptive field {field})")

    def initialize_data(self) -> None:
        """The base's samplers and validation patches, then an unpaired training stream: the base's source
        stream plus an independent target stream over the same training cases (see data/unpaired.py)."""
        super().initialize_data()
        s = self.train_sampler
        target_sampler = PatchSampler(CaseCache(self.experiment.data_folder), s.case_ids, s.input_indices,
                                      s.target_index, s.patch_size, s.oversample_tumour, s.num_slices, s.slicing_axes)
        self.train_stream = UnpairedTrainingBatches(self.train_stream, self.training_stream(target_sampler))

    def augment(self, batch: dict) -> dict:
        """Augment the source and the target half on the device, then keep the source's inputs and the target's
        target (:func:`unpaired_batch`)."""
        return unpaired_batch(super().augment(batch["source"]), super().augment(batch["target"]))

    # ================================================================ the step
    def masked(self, output: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """A generator's ``output`` on its ``source``'s support (:func:`on_support`), unless ``support_mask`` is off."""
        return on_support(output, source) if self.support_mask else output

    def identity_loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """CycleGAN's identity term adapted to A (k x inputs channels) and B (1 channel):
        ``E |G(b in every input channel) - b| + E |R(c) - c in every channel|``, c = the mean of the inputs'
        central slices of ``a``."""
        k, channels = self.experiment.num_slices, a.shape[1]
        centre = a[:, k // 2::k].mean(dim=1, keepdim=True)
        with self.autocast():
            same_b = self.masked(self.network(b.expand(-1, channels, *b.shape[2:])), b)
            same_a = self.masked(self.reverse(centre), centre)
        return l1_loss(same_b.float(), b) + l1_loss(same_a.float(), centre.expand_as(same_a))

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        a, b = batch["a"], batch["b"]
        critics = (self.discriminator_a, self.discriminator_b)
        # generators: adversarial terms with the discriminators frozen, cycle consistency both ways
        self.optimizer.zero_grad(set_to_none=True)
        self.reverse_optimizer.zero_grad(set_to_none=True)
        for critic in critics:
            critic.requires_grad_(False)
        try:
            with self.autocast():
                fake_b, fake_a = self.masked(self.network(a), a), self.masked(self.reverse(b), b)
                cycled_a, cycled_b = self.masked(self.reverse(fake_b), a), self.masked(self.network(fake_a), b)
                score_b, score_a = self.discriminator_b(fake_b), self.discriminator_a(fake_a)
        finally:
            for critic in critics:
                critic.requires_grad_(True)
        parts = {"adversarial_g": lsgan_generator_loss(score_b), "adversarial_r": lsgan_generator_loss(score_a),
                 "cycle": l1_loss(cycled_a.float(), a) + l1_loss(cycled_b.float(), b)}
        loss = parts["adversarial_g"] + parts["adversarial_r"] + self.cycle_weight * parts["cycle"]
        if self.identity_weight:
            parts["identity"] = self.identity_loss(a, b)
            loss = loss + self.identity_weight * parts["identity"]
        self.multi_optimizer_step(loss, [(self.optimizer, self.network), (self.reverse_optimizer, self.reverse)],
                                  self.grad_scaler)
        # discriminators: real vs synthesised (detached) in one batch of 2 B each
        for optimizer in self.discriminator_optimizers:
            optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            scores_b = self.discriminator_b(torch.cat([b, fake_b.detach()]))
            scores_a = self.discriminator_a(torch.cat([a, fake_a.detach()]))
        parts["discriminator_b"] = lsgan_discriminator_loss(*scores_b.float().chunk(2))
        parts["discriminator_a"] = lsgan_discriminator_loss(*scores_a.float().chunk(2))
        self.multi_optimizer_step(parts["discriminator_a"] + parts["discriminator_b"],
                                  list(zip(self.discriminator_optimizers, critics)), self.discriminator_scaler)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    def multi_optimizer_step(self, loss: torch.Tensor, pairs: list[tuple[torch.optim.Optimizer, nn.Module]],
                             scaler: torch.amp.GradScaler) -> None:
        """:meth:`optimizer_step` for one loss over several (optimiser, module) pairs: backward once, then per
        pair unscale, clip the module's gradient norm and step; one scaler update."""
        scaler.scale(loss).backward()
        clip = self.training.grad_clip
        for optimizer, module in pairs:
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), float(clip))
            scaler.step(optimizer)
        scaler.update()

    # ================================================================ checkpoints
    def recipe_state(self) -> dict:
        optimizer_a, optimizer_b = self.discriminator_optimizers
        return {**super().recipe_state(),
                "reverse_weights": self.reverse.state_dict(),
                "reverse_optimizer_state": self.reverse_optimizer.state_dict(),
                "discriminator_a_weights": self.discriminator_a.state_dict(),
                "discriminator_b_weights": self.discriminator_b.state_dict(),
                "discriminator_a_optimizer_state": optimizer_a.state_dict(),
                "discriminator_b_optimizer_state": optimizer_b.state_dict(),
                "discriminator_grad_scaler_state": self.discriminator_scaler.state_dict()}

    def load_recipe_state(self, checkpoint: dict) -> None:
        super().load_recipe_state(checkpoint)
        optimizer_a, optimizer_b = self.discriminator_optimizers
        self.reverse.load_state_dict(checkpoint["reverse_weights"])
        self.reverse_optimizer.load_state_dict(checkpoint["reverse_optimizer_state"])
        self.discriminator_a.load_state_dict(checkpoint["discriminator_a_weights"])
        self.discriminator_b.load_state_dict(checkpoint["discriminator_b_weights"])
        optimizer_a.load_state_dict(checkpoint["discriminator_a_optimizer_state"])
        optimizer_b.load_state_dict(checkpoint["discriminator_b_optimizer_state"])
        self.discriminator_scaler.load_state_dict(checkpoint["discriminator_grad_scaler_state"])

    def describe(self) -> str:
        return (super().describe() + f"; unpaired: source and target patches from different cases, cycle weight "
                f"{self.cycle_weight:g}, identity weight {self.identity_weight:g}, generator "
                f"{self.config.architecture.name}")


__all__ = ["SynthTrainer_ANGAN"]
