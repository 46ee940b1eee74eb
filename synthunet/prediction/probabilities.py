"""Class probabilities of segmentation networks: sliding-window logits -> softmax -> mean over the networks
(folds). Shared by synth_segment and the segmenter's validation at the end of training."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from synthunet.prediction.sliding_window import predict_volume_sliding_window


def predict_probabilities(networks: Sequence[nn.Module | Callable], data: np.ndarray | torch.Tensor,
                          patch_size: Sequence[int], step_size: float = 0.5, use_mirroring: bool = True,
                          batch_size: int | None = None, device: torch.device | str | None = None,
                          use_amp: bool = True, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """``(C_in, z, y, x)`` preprocessed inputs -> ``(K, z, y, x)`` float32 class probabilities on the CPU.

    Per network: sliding-window logits (Gaussian-weighted, mirrored flips averaged), then softmax; the
    probabilities are averaged over the networks (folds). Voxels no patch covers (background) get class 0.
    """
    total: torch.Tensor | None = None
    for network in networks:
        logits = predict_volume_sliding_window(network, data, patch_size, step_size, use_mirroring, batch_size, device,
                                               use_amp=use_amp, progress=progress)
        # one zero channel back: every patch was background and the network never ran -> certain background
        probabilities = torch.ones_like(logits) if logits.shape[0] == 1 else torch.softmax(logits, 0)
        if total is not None and total.shape[0] != probabilities.shape[0]:
            classes = max(total.shape[0], probabilities.shape[0])
            total, probabilities = pad_classes(total, classes), pad_classes(probabilities, classes)
        total = probabilities if total is None else total + probabilities
    if total is None:
        raise ValueError("No network given")
    return total / len(networks)


def pad_classes(probabilities: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Zero probability for classes a background-only output (1 channel) does not have."""
    if probabilities.shape[0] >= num_classes:
        return probabilities
    padding = torch.zeros((num_classes - probabilities.shape[0],) + tuple(probabilities.shape[1:]))
    return torch.cat([probabilities, padding])
