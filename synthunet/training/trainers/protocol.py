"""A recipe for scans from other scanners and protocols (issue 16): the default recipe plus augmentations that
simulate a protocol change (documentation/training.md, "Protocol augmentation")."""
from __future__ import annotations

import dataclasses

from synthunet.training.data.augmentation import AugmentationParams
from synthunet.training.trainer import SynthTrainer


class SynthTrainer_ProtocolAug(SynthTrainer):
    """SynthTrainer with thick-slice blur (inputs and target alike), a bias field and extra noise on the inputs.

    These stay on with a prior in the plans (only batchgenerators' brightness, contrast and gamma go off there).
    """

    augmentation = dataclasses.replace(AugmentationParams(), p_slice_blur=0.3, p_bias=0.3, p_protocol_noise=0.2)
