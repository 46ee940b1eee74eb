"""Seed 001's recipe for contrast enhancement: MAE + SSIM + a local L1 on strongly enhancing voxels,
trained in two stages."""
from __future__ import annotations

import torch

from synthunet.training.experiment import ExperimentError
from synthunet.training.losses import enhancement_mask, l1_loss, local_l1, ssim_loss
from synthunet.training.trainer import SynthTrainer

Parts = tuple[torch.Tensor, dict[str, torch.Tensor]]


class SynthTrainer_LocalLoss(SynthTrainer):
    """``lambda_1 MAE + lambda_2 (1 - SSIM) + lambda_3 ||(f(X) - Y) * M||_1`` with ``M = [Y - X_T1N > 0.1]``.

    Stage 1: lambda = (1, 1, 1). Stage 2 (the last 20 % of the epochs; seed 001: epochs 41-50 of 50):
    lambda = (0.1, 0.1, 10) and the learning rate divided by 10. Needs T1N as an input and T1C as target.
    """

    reference_input = "T1N"
    delta = 0.1
    stage_one_weights = (1.0, 1.0, 1.0)
    stage_two_weights = (0.1, 0.1, 10.0)
    stage_two_lr_factor = 0.1
    stage_two_fraction = 0.8  # stage 2 starts after this fraction of the epochs

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        experiment = self.experiment
        if experiment.target.upper() != "T1C" or "T1N" not in [c.upper() for c in experiment.inputs]:
            raise ExperimentError(
                f"{type(self).__name__} (seed 001's local loss) synthesises contrast enhancement: it needs target "
                f"T1C and T1N among the inputs, got target {experiment.target} from {', '.join(experiment.inputs)}")
        self.reference_input = next(c for c in experiment.inputs if c.upper() == "T1N")
        self.weights = self.stage_one_weights

    @property
    def stage_two_epoch(self) -> int:
        """First epoch of stage 2: ``int(0.8 * num_epochs)``, at least 1 (a 1-epoch run stays in stage 1)."""
        return max(1, int(self.num_epochs * self.stage_two_fraction))

    def on_epoch_start(self, epoch: int) -> None:
        second = epoch >= self.stage_two_epoch
        self.weights = self.stage_two_weights if second else self.stage_one_weights
        self.schedule.factor = self.stage_two_lr_factor if second else 1.0
        if second and epoch == self.stage_two_epoch:
            self.log.print(f"stage 2 of the local loss: weights {self.weights}, learning rate x {self.schedule.factor}")
        self.log.log(epoch, "stage", 2.0 if second else 1.0)
        super().on_epoch_start(epoch)

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> Parts:
        target = batch["target"]
        mask = enhancement_mask(target, batch["reference"], self.delta)
        mae, structural = l1_loss(prediction, target), ssim_loss(prediction, target)
        local = local_l1(prediction, target, mask)
        w1, w2, w3 = self.weights
        return w1 * mae + w2 * structural + w3 * local, {"mae": mae, "ssim": structural, "local": local}
