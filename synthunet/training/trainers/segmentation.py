"""``SegmentationTrainer``: a tumour segmenter trained with the synthesis machinery (issue #9, downstream check).

``synth_train DATASET 3d_fullres seg FOLD -tr SegmentationTrainer``: the reserved TARGET ``seg`` means
"every sequence in, label map out". Same plans, patches, tumour oversampling, augmentation, optimiser,
schedule, checkpoints, resuming and DDP as the synthesis recipes; what differs:

* network: the plans' architecture with ``num_classes`` outputs (largest dataset.json label + 1; BraTS:
  background, NCR, ED, ET), no prior;
* data: the inputs in ``data``, the label map in ``seg`` (-1 outside the brain = background);
* loss: nnU-Net's cross-entropy + soft Dice over the foreground classes (batch Dice),
  :mod:`synthunet.training.losses.segmentation`;
* validation patches: nnU-Net's pseudo Dice (TP/FP/FN of the argmax summed over every patch) per
  foreground label; their mean, ``val_dice``, decides ``checkpoint_best``;
* full-volume validation: Dice WT/TC/ET and per label on the fold's validation cases
  (:func:`synthunet.training.segmentation.validate_segmentation`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from synthunet.architectures.model_network import build_segmentation_network
from synthunet.training.data import BatchAugmenter, CaseCache, WaitTimer
from synthunet.training.data.segmentation import SegmentationPatchSampler, SegmentationValidationPatches
from synthunet.training.experiment import ExperimentError
from synthunet.training.losses.segmentation import confusion_counts, dice_ce_loss, dice_from_counts
from synthunet.training.segmentation import validate_segmentation
from synthunet.training.trainer import VALIDATION_PATCH_SEED, SynthTrainer, inner_network_with_residual


def segmentation_panels(label_names: list[str]) -> tuple:
    """Panels of progress.png for a segmenter: the validation panel shows the pseudo Dice (mean and per label)."""
    dice = ("val_dice", *(f"val_dice_{name}" for name in label_names))
    return (("loss", ("train_loss", "val_loss"), ()),
            ("validation patches: pseudo Dice (argmax, summed over patches)", dice, ()),
            ("learning rate", ("lr",), ()),
            ("time per epoch", ("epoch_time_s",), ("data_wait_fraction",)))


class SegmentationTrainer(SynthTrainer):
    """Tumour segmentation (TARGET ``seg``) with nnU-Net's Dice + cross-entropy loss; 3D configurations."""

    segmentation = True
    best_metric_key = "val_dice"
    best_metric_name = "validation pseudo Dice (mean over tumour labels)"

    def __init__(self, experiment, *args, **kwargs) -> None:
        if kwargs.get("residual_input"):
            raise ExperimentError("--residual_input is for synthesis; a segmenter predicts labels")
        super().__init__(experiment, *args, **kwargs)
        if experiment.dimension != 3:
            raise ExperimentError(f"SegmentationTrainer needs a 3D configuration (e.g. 3d_fullres); "
                                  f"{experiment.configuration} is {experiment.dimension}D")
        self.num_classes = experiment.num_classes
        if self.num_classes < 2:
            raise ExperimentError(f"dataset.json declares no tumour label (labels {experiment.labels}); a segmenter "
                                  "needs at least one label above 0")
        names = {int(v): k for k, v in experiment.labels.items()}
        self.class_names = [names.get(c, str(c)) for c in range(self.num_classes)]
        self.log.panels = segmentation_panels(self.class_names[1:])

    def build_network(self) -> nn.Module:
        if self.config.architecture.prior:
            self.log.print("the plans' prior is a synthesis prior: the segmenter does not use it")
        return build_segmentation_network(self.config, len(self.experiment.inputs), self.num_classes)

    def initialize_data(self) -> None:
        """Samplers of inputs and labels, the augmented training stream and the fixed validation patches."""
        experiment = self.experiment
        train_cases, val_cases = experiment.fold_cases()
        patch_size = list(self.config.patch_size)
        common = dict(input_indices=experiment.input_indices, patch_size=patch_size,
                      oversample_tumour=self.training.oversample_tumour)
        self.train_sampler = SegmentationPatchSampler(CaseCache(experiment.data_folder), train_cases, **common)
        self.val_sampler = SegmentationPatchSampler(CaseCache(experiment.data_folder), val_cases, **common)
        self.augmenter = BatchAugmenter(patch_size, has_target=False)
        self.train_stream = self.training_stream(self.train_sampler)
        seed = VALIDATION_PATCH_SEED + (experiment.fold if isinstance(experiment.fold, int) else 99)
        self.validation_patches = SegmentationValidationPatches(self.val_sampler, self.batch_size,
                                                                self.val_iterations, seed)
        self.wait_timer = WaitTimer()

    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy + (1 - soft Dice over the foreground classes) of the logits against ``seg``."""
        return dice_ce_loss(prediction, batch["seg"])

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Loss and the argmax's per-class true/false positives and false negatives."""
        with self.autocast():
            logits = inner_network_with_residual(self.network)(batch["data"])
        logits = logits.float()
        loss, _ = self.compute_loss(logits, batch)
        return {"loss": loss, "counts": confusion_counts(logits.cpu(), batch["seg"].cpu())}

    def validate_epoch(self, epoch: int) -> None:
        """Loss and pseudo Dice (per foreground label and their mean) over the fixed validation patches."""
        if not self.is_main:
            return
        self.network.eval()
        loss, counts = 0.0, torch.zeros((self.num_classes, 3), dtype=torch.float64)
        for batch in self.validation_patches:
            result = self.validation_step(self.to_device(batch))
            loss += float(result["loss"])
            counts += result["counts"]
        dice = dice_from_counts(counts)[1:]
        self.log.log(epoch, "val_loss", loss / max(len(self.validation_patches), 1))
        for name, value in zip(self.class_names[1:], dice):
            self.log.log(epoch, f"val_dice_{name}", value)
        finite = [d for d in dice if not math.isnan(d)]
        self.log.log(epoch, "val_dice", float(np.mean(finite)) if finite else float("nan"))

    def network_for_checkpoint(self, state: dict) -> nn.Module:
        """The untrained segmenter that the weights of checkpoint ``state`` load into (``--val_only``)."""
        return self.build_network()

    def run_final_validation(self) -> dict:
        """Segment the fold's validation cases as whole volumes and score them (``validation/``)."""
        return validate_segmentation(self.experiment, inner_network_with_residual(self.network), self.device,
                                     self.output_folder / "validation", self.log.print)
