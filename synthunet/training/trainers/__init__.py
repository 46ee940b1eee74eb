"""Training recipes, selected with ``synth_train -tr NAME`` through the explicit :data:`TRAINERS` registry.

To add a recipe: subclass :class:`~synthunet.training.trainer.SynthTrainer` (override ``compute_loss``,
and ``train_step`` for a new kind of step), then add it to :data:`TRAINERS`. There is no module scanning.
"""
from __future__ import annotations

from synthunet.errors import InputError
from synthunet.training.trainer import SynthTrainer
from synthunet.training.trainers.adversarial import (AdversarialSynthTrainer, SynthTrainer_Combined,
                                                     SynthTrainer_CombinedNoVGG, SynthTrainer_GAN, SynthTrainer_GDL)
from synthunet.training.trainers.baselines import (BASELINE_TRAINERS, Baseline_HistogramMatching,
                                                   Baseline_TissueMatching)
from synthunet.training.trainers.local import SynthTrainer_LocalLoss
from synthunet.training.trainers.pixel import (SynthTrainer_Freq, SynthTrainer_L1Masked, SynthTrainer_L1SSIM,
                                               SynthTrainer_Perceptual)
from synthunet.training.trainers.protocol import SynthTrainer_ProtocolAug
from synthunet.training.trainers.segmentation import SegmentationTrainer
from synthunet.training.trainers.super_resolution import SynthTrainer_SRGAN, SynthTrainer_SRGANNoVGG
from synthunet.training.trainers.unpaired import SynthTrainer_ANGAN

TRAINERS: dict[str, type[SynthTrainer]] = {cls.__name__: cls for cls in (
    SynthTrainer, SynthTrainer_L1Masked, SynthTrainer_L1SSIM, SynthTrainer_Freq, SynthTrainer_GAN,
    SynthTrainer_Perceptual, SynthTrainer_Combined, SynthTrainer_CombinedNoVGG, SynthTrainer_LocalLoss,
    SynthTrainer_GDL, SynthTrainer_SRGAN, SynthTrainer_SRGANNoVGG, SynthTrainer_ProtocolAug)}
# closed-form baselines (trainers.baselines) go through the same model folders, prediction and evaluation
TRAINERS.update(BASELINE_TRAINERS)
#: tumour segmenters (TARGET ``seg``, the downstream check); kept apart from the synthesis recipes above
SEGMENTATION_TRAINERS: dict[str, type[SynthTrainer]] = {SegmentationTrainer.__name__: SegmentationTrainer}
#: unpaired translation (seed 003, ``synth_train ... --unpaired``); apart from TRAINERS, whose recipes train on
#: paired patches with the plans' step-time budget (benchmarks/quality.py runs every one of those by default)
UNPAIRED_TRAINERS: dict[str, type[SynthTrainer]] = {cls.__name__: cls for cls in (SynthTrainer_ANGAN,
                                                                                Baseline_HistogramMatching,
                                                                                Baseline_TissueMatching)}


def get_trainer_class(name: str) -> type[SynthTrainer]:
    """The recipe registered under ``name``; a clear error listing every recipe otherwise."""
    recipes = {**TRAINERS, **SEGMENTATION_TRAINERS, **UNPAIRED_TRAINERS}
    if name not in recipes:
        close = [n for n in recipes if n.lower() == name.lower()]
        hint = f" Did you mean {close[0]}?" if close else ""
        raise InputError(f"Unknown trainer {name!r}.{hint} Available: {', '.join(recipes)}")
    return recipes[name]


__all__ = ["AdversarialSynthTrainer", "SEGMENTATION_TRAINERS", "TRAINERS", "UNPAIRED_TRAINERS", "get_trainer_class",
           *TRAINERS, *SEGMENTATION_TRAINERS, *UNPAIRED_TRAINERS]
