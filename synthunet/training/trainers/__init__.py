"""Training recipes, selected with ``synth_train -tr NAME`` through the explicit :data:`TRAINERS` registry.

To add a recipe: subclass :class:`~synthunet.training.trainer.SynthTrainer` (override ``compute_loss``,
and ``train_step`` for a new kind of step), then add it to :data:`TRAINERS`. There is no module scanning.
"""
from __future__ import annotations

from synthunet.baselines.trainers import BASELINE_TRAINERS
from synthunet.training.trainer import SynthTrainer
from synthunet.training.trainers.adversarial import (AdversarialSynthTrainer, SynthTrainer_Combined,
                                                     SynthTrainer_CombinedNoVGG, SynthTrainer_GAN, SynthTrainer_GDL)
from synthunet.training.trainers.local import SynthTrainer_LocalLoss
from synthunet.training.trainers.pixel import (SynthTrainer_Freq, SynthTrainer_L1Masked, SynthTrainer_L1SSIM,
                                               SynthTrainer_Perceptual)

TRAINERS: dict[str, type[SynthTrainer]] = {cls.__name__: cls for cls in (
    SynthTrainer, SynthTrainer_L1Masked, SynthTrainer_L1SSIM, SynthTrainer_Freq, SynthTrainer_GAN,
    SynthTrainer_Perceptual, SynthTrainer_Combined, SynthTrainer_CombinedNoVGG, SynthTrainer_LocalLoss,
    SynthTrainer_GDL)}
# closed-form baselines (synthunet.baselines) go through the same model folders, prediction and evaluation
TRAINERS.update(BASELINE_TRAINERS)


def get_trainer_class(name: str) -> type[SynthTrainer]:
    """The recipe registered under ``name``; a clear error listing every recipe otherwise."""
    if name not in TRAINERS:
        close = [n for n in TRAINERS if n.lower() == name.lower()]
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ValueError(f"Unknown trainer {name!r}.{hint} Available: {', '.join(TRAINERS)}")
    return TRAINERS[name]


__all__ = ["AdversarialSynthTrainer", "TRAINERS", "get_trainer_class", *TRAINERS]
