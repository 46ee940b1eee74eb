"""A closed-form prior under the network: ``output = prior(x) + network(x)``.

CPU plans give a 3D U-Net only minutes of training (about 2,000 small-patch steps). Started from scratch
with the earlier 500-step plans it was still blurrier than a voxel-wise regression fitted in closed form on
the same training cases (measured on the example dataset, see documentation/benchmarks.md). With
``"prior": "voxel_regression"`` in the plans' architecture block the network instead learns a correction to
that regression: the regression is fitted on the fold's training cases when training starts (seconds), its
coefficients are buffers of the model (saved in every checkpoint), and the network's output layer starts at
zero, so training starts from the regression's prediction and can only be judged by how much it improves on it.
The module (:class:`~synthunet.architectures.model_network.PriorResidual`) is built with the network; this
module fits it. 2.5D configurations get the same regression in 2D (:func:`fit_slice_prior`); super-resolution
datasets get ``"matched_input"``, the interpolated input histogram-matched onto the target
(:func:`fit_matched_input`). See documentation/planning.md, "The closed-form prior of CPU plans".
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import numpy as np
from torch import nn

from synthunet.architectures.baselines import QuantileMapping, VoxelRegression
from synthunet.architectures.model_network import CentralSlicePrior, PriorResidual
from synthunet.errors import InputError
from synthunet.training.baseline_fitting import Case, fit_identity, fit_quantile_mapping, fit_voxel_regression
from synthunet.training.tissue_matching import fit_tissue_matching


def training_cases(experiment) -> Iterator[Case]:
    """(inputs, target, brain mask) of every training case of the experiment's fold, read whole."""
    from synthunet.preprocessing import load_case

    train_cases, _ = experiment.fold_cases()
    for case_id in train_cases:
        data, seg, _ = load_case(experiment.data_folder, case_id, mmap=True)
        inputs = np.stack([np.asarray(data[i], dtype=np.float32) for i in experiment.input_indices])
        yield inputs, np.asarray(data[experiment.target_index], dtype=np.float32), np.asarray(seg[0]) >= 0


def channel_images(experiment, cases: list[str], channel: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(one channel, brain mask) of each of ``cases``, read whole; no other channel is read."""
    from synthunet.preprocessing import load_case

    for case_id in cases:
        data, seg, _ = load_case(experiment.data_folder, case_id, mmap=True)
        yield np.asarray(data[channel], dtype=np.float32), np.asarray(seg[0]) >= 0


def fit_prior(network: nn.Module, experiment, log: Callable[[str], None] = print, unpaired: bool = False) -> bool:
    """Fit the prior of ``network`` (if it has one) on the training cases of the fold, in place; ``unpaired``
    (unpaired recipes): without reading a source and a target of the same case (:func:`fit_unpaired_matched_input`;
    only ``matched_input`` can be fitted so). ``tissue_matched_input`` is always fitted without pairs
    (:func:`fit_unpaired_tissue_matching`).

    Returns whether there was a prior. The trainer then switches intensity augmentation off: the prior
    is a fixed function of the input intensities, fitted on un-augmented data.
    """
    priors = [m for m in network.modules() if isinstance(m, PriorResidual)]
    for module in priors:
        prior = module.prior
        model = prior.slice_model if isinstance(prior, CentralSlicePrior) else prior
        if isinstance(model, QuantileMapping) and experiment.config.architecture.prior == "tissue_matched_input":
            fit_unpaired_tissue_matching(model, experiment, log)
        elif isinstance(model, QuantileMapping):
            (fit_unpaired_matched_input if unpaired else fit_matched_input)(model, experiment, log)
        elif unpaired:
            raise InputError(f"A {type(model).__name__} prior is fitted on paired cases; an unpaired recipe takes "
                             "the tissue_matched_input or matched_input prior (or none): set the plans' architecture "
                             "\"prior\" accordingly")
        elif isinstance(prior, CentralSlicePrior):
            log("fitting the voxel-regression prior on the fold's training cases")
            fit_slice_prior(prior, training_cases(experiment))
        else:
            log("fitting the voxel-regression prior on the fold's training cases")
            fit_voxel_regression(prior, training_cases(experiment))
    return bool(priors)


def fit_matched_input(model: QuantileMapping, experiment, log: Callable[[str], None] = print) -> QuantileMapping:
    """Fit the ``matched_input`` prior in place: the input most correlated with the target over the fold's training
    cases (as Baseline_Identity chooses it), histogram-matched onto the target (their mean brain quantiles)."""
    channel = int(fit_identity(training_cases(experiment), in_channels=len(experiment.input_indices)).channel)
    log(f"fitting the matched-input prior: {experiment.inputs[channel]} histogram-matched onto {experiment.target} "
        "on the fold's training cases")
    train_cases, _ = experiment.fold_cases()
    fitted = fit_quantile_mapping(channel_images(experiment, train_cases, experiment.input_indices[channel]),
                                  channel_images(experiment, train_cases, experiment.target_index),
                                  in_channels=len(experiment.input_indices), channel=channel,
                                  num_levels=len(model.source_levels))
    return load_levels(model, fitted)


def load_levels(model: QuantileMapping, fitted: QuantileMapping) -> QuantileMapping:
    """Copy ``fitted``'s channel and quantile levels into ``model`` (the prior module built with the network)."""
    for name in ("channel", "source_levels", "target_levels"):
        getattr(model, name).copy_(getattr(fitted, name))
    return model


def unpaired_halves(cases: list[str]) -> tuple[list[str], list[str]]:
    """Disjoint halves of ``cases`` (sorted, alternating): the source is read from the first, the target from the
    second, so no case contributes both."""
    ordered = sorted(cases)
    return ordered[0::2], ordered[1::2]


def unpaired_images(experiment, method: str, log: Callable[[str], None] = print) -> tuple[Iterator, Iterator]:
    """``(image, brain mask)`` of the source (the first input) over one half of the fold's training cases and of the
    target over the other (:func:`unpaired_halves`), read lazily; ``method`` names the fit in the log and errors."""
    train_cases, _ = experiment.fold_cases()
    source_cases, target_cases = unpaired_halves(train_cases)
    if not source_cases or not target_cases:
        raise InputError(f"Unpaired {method} needs at least 2 training cases (fold {experiment.fold} has "
                         f"{len(train_cases)})")
    log(f"{method} without pairs: {experiment.inputs[0]} from {len(source_cases)} cases, {experiment.target} from "
        f"{len(target_cases)} other cases")
    return (channel_images(experiment, source_cases, experiment.input_indices[0]),
            channel_images(experiment, target_cases, experiment.target_index))


def fit_unpaired_matched_input(model: QuantileMapping, experiment,
                               log: Callable[[str], None] = print) -> QuantileMapping:
    """Fit a ``matched_input`` model in place without pairs (:func:`unpaired_images`): the first input (the source,
    ``--inputs SOURCE``) histogram-matched onto the target, their quantile levels from disjoint halves of the fold's
    training cases. Baseline_HistogramMatching, and the unpaired recipes' prior in plans made before the fifteenth
    session."""
    sources, targets = unpaired_images(experiment, "histogram matching", log)
    fitted = fit_quantile_mapping(sources, targets, in_channels=len(experiment.input_indices), channel=0,
                                  num_levels=len(model.source_levels))
    return load_levels(model, fitted)


def fit_unpaired_tissue_matching(model: QuantileMapping, experiment,
                                 log: Callable[[str], None] = print) -> QuantileMapping:
    """Fit a ``tissue_matched_input`` model in place without pairs (:func:`unpaired_images`): the first input mapped
    onto the target by tissue matching (:mod:`synthunet.training.tissue_matching`); every candidate's edge
    difference is logged. Baseline_TissueMatching and the unpaired recipes' prior."""
    sources, targets = unpaired_images(experiment, "tissue matching", log)
    fitted, chosen, scores = fit_tissue_matching(sources, targets, experiment.config.spacing,
                                                 in_channels=len(experiment.input_indices), channel=0,
                                                 num_levels=len(model.source_levels))
    for name, score in scores.items():
        log(f"  {name:22s} edge difference {score:.4f}{'  <- chosen' if name == chosen else ''}")
    return load_levels(model, fitted)


def fit_slice_prior(prior: CentralSlicePrior, cases: Iterator[Case], ridge: float = 1e-3) -> CentralSlicePrior:
    """Fit a 2.5D voxel-regression prior on whole volumes, in place: as a 3D regression whose smoothing skips
    ``slice_axis`` (sigma 0 there, the 2D sigmas on the other two axes), i.e. the 2D features of every slice along
    that axis."""
    regression = prior.slice_model
    sigmas = []
    for scale in regression.sigmas_voxels:
        in_plane = iter(scale)
        sigmas.append([0.0 if axis == prior.slice_axis else next(in_plane) for axis in range(3)])
    volume_model = VoxelRegression(3, len(prior.channels), sigmas_voxels=sigmas, degree=regression.degree)
    fit_voxel_regression(volume_model, cases, ridge=ridge)
    for name in ("feature_mean", "feature_std", "coefficients"):
        getattr(regression, name).copy_(getattr(volume_model, name))
    return prior
