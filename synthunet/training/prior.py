"""A closed-form prior under the network: ``output = prior(x) + network(x)``.

CPU plans give a 3D U-Net only minutes of training (about 2,000 small-patch steps). Started from scratch
with the earlier 500-step plans it was still blurrier than a voxel-wise regression fitted in closed form on
the same training cases (measured on the example dataset, see documentation/benchmarks.md). With
``"prior": "voxel_regression"`` in the plans' architecture block the network instead learns a correction to
that regression: the regression is fitted on the fold's training cases when training starts (seconds), its
coefficients are buffers of the model (saved in every checkpoint), and the network's output layer starts at
zero, so training starts from the regression's prediction and can only be judged by how much it improves on it.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import numpy as np
import torch
from torch import nn

from synthunet.architectures.baselines import VoxelRegression, regression_sigmas_voxels
from synthunet.training.baseline_fitting import Case, fit_voxel_regression
from synthunet.errors import InputError

PRIORS = ("voxel_regression",)


class PriorResidual(nn.Module):
    """``prior(x) + network(x)``; the network's output convolution is zero-initialised."""

    def __init__(self, network: nn.Module, prior: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.prior = prior
        output = getattr(network, "output", None)
        if isinstance(output, (nn.Conv2d, nn.Conv3d)):
            nn.init.zeros_(output.weight)
            if output.bias is not None:
                nn.init.zeros_(output.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prior(x) + self.network(x)


def build_prior(name: str, config: dict, num_inputs: int) -> nn.Module:
    """The (unfitted) prior module named in a configuration's architecture block."""
    if name not in PRIORS:
        raise InputError(f"Unknown prior {name!r}; known: {', '.join(PRIORS)}")
    if int(config["dimension"]) != 3:
        raise InputError(f"The {name} prior needs a 3D configuration")
    return VoxelRegression(3, num_inputs, sigmas_voxels=regression_sigmas_voxels(config["spacing"]), degree=2)


def training_cases(experiment) -> Iterator[Case]:
    """(inputs, target, brain mask) of every training case of the experiment's fold, read whole."""
    from synthunet.preprocessing import load_case

    train_cases, _ = experiment.fold_cases()
    for case_id in train_cases:
        data, seg, _ = load_case(experiment.data_folder, case_id, mmap=True)
        inputs = np.stack([np.asarray(data[i], dtype=np.float32) for i in experiment.input_indices])
        yield inputs, np.asarray(data[experiment.target_index], dtype=np.float32), np.asarray(seg[0]) >= 0


def fit_prior(network: nn.Module, experiment, log: Callable[[str], None] = print) -> bool:
    """Fit the prior of ``network`` (if it has one) on the training cases of the fold, in place.

    Returns whether there was a prior. The trainer then switches intensity augmentation off: the prior
    is a fixed function of the input intensities, fitted on un-augmented data.
    """
    priors = [m for m in network.modules() if isinstance(m, PriorResidual)]
    for module in priors:
        log("fitting the voxel-regression prior on the fold's training cases")
        fit_voxel_regression(module.prior, training_cases(experiment))
    return bool(priors)
