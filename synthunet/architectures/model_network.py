"""The network a model folder holds: ``build_network`` from the plans, plus for synthesis the optional
closed-form prior under it (:mod:`synthunet.training.prior` fits it) and the optional long residual connection
from one input channel (seed 002); for segmentation ``num_classes`` logit outputs."""
from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
from torch import nn

from synthunet.architectures import build_network
from synthunet.architectures.baselines import QuantileMapping, VoxelRegression, regression_sigmas_voxels
from synthunet.errors import InputError
from synthunet.plans import ArchitecturePlan, ConfigurationPlan, as_architecture


def input_channel_index(inputs: list[str], channel: str, num_slices: int = 1) -> int:
    """Network input channel holding input sequence ``channel`` (its central slice for 2.5D: ``i * k + k // 2``)."""
    matches = [i for i, name in enumerate(inputs) if name.lower() == channel.lower()]
    if not matches:
        raise InputError(f"{channel!r} is not one of the network inputs {inputs}")
    return matches[0] * num_slices + num_slices // 2


#: voxel_regression: the Baseline_VoxelRegression model; matched_input: the input most correlated with the target,
#: histogram-matched onto it (a QuantileMapping), the natural prior of super-resolution, whose input is the
#: interpolated target; tissue_matched_input: the first input mapped onto the target by tissue matching, fitted
#: without pairs (a QuantileMapping of TISSUE_LEVELS levels, any shape; synthunet/training/tissue_matching.py), the
#: prior of the unpaired recipes
PRIORS = ("voxel_regression", "matched_input", "tissue_matched_input")
#: number of tabulated source intensities of the tissue_matched_input prior
TISSUE_LEVELS = 256


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


class CentralSlicePrior(nn.Module):
    """A 2.5D prior: a 2D closed-form model of the central slice of each input's k-slice stack.

    A 2D :class:`VoxelRegression` uses in-plane features only, so it is fitted on whole volumes as a 3D regression
    with no smoothing along ``slice_axis`` (:func:`synthunet.training.prior.fit_prior`), which gives the same
    features slice by slice; a :class:`QuantileMapping` is voxel-wise and fits the same in any dimension.
    """

    def __init__(self, slice_model: nn.Module, channels: list[int], slice_axis: int) -> None:
        super().__init__()
        self.slice_model = slice_model
        self.channels = [int(c) for c in channels]
        self.slice_axis = int(slice_axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slice_model(x[:, self.channels])


class NetworkFields(NamedTuple):
    """What building a configuration's network reads from it."""

    dimension: int
    spacing: tuple[float, ...]
    architecture: ArchitecturePlan
    num_slices: int
    slicing_axes: tuple[int, ...]


def network_fields(config: ConfigurationPlan | Mapping) -> NetworkFields:
    """:class:`NetworkFields` of a typed configuration, or of a (possibly partial) configuration dict (tests and
    benchmarks build networks from a few keys)."""
    if isinstance(config, ConfigurationPlan):
        architecture = config.check_trainable("the configuration").architecture
        return NetworkFields(config.dimension, config.spacing, architecture, config.num_slices, config.slicing_axes)
    return NetworkFields(int(config["dimension"]), tuple(float(s) for s in config.get("spacing", ())),
                         as_architecture(config["architecture"]), int(config.get("num_slices", 1)),
                         tuple(int(a) for a in config.get("slicing_axes", (0,))))


def build_prior(name: str, config: ConfigurationPlan | Mapping, num_inputs: int) -> nn.Module:
    """The (unfitted) prior module named in a configuration's architecture block, in 3D; for a 2.5D configuration
    the same model in 2D on the central slices (:class:`CentralSlicePrior`; a regression's in-plane spacing is
    ``min(spacing)``, as the 2.5D planner uses)."""
    if name not in PRIORS:
        raise InputError(f"Unknown prior {name!r}; known: {', '.join(PRIORS)}")
    fields = network_fields(config)
    dimension = fields.dimension
    if dimension not in (2, 3):
        raise InputError(f"The {name} prior needs a 3D or 2.5D configuration, not {dimension}D")
    if name == "matched_input":
        model: nn.Module = QuantileMapping(dimension, num_inputs)
    elif name == "tissue_matched_input":
        model = QuantileMapping(dimension, num_inputs, num_levels=TISSUE_LEVELS)
    else:
        spacing = fields.spacing if dimension == 3 else [min(fields.spacing)] * 2
        model = VoxelRegression(dimension, num_inputs, sigmas_voxels=regression_sigmas_voxels(spacing), degree=2)
    if dimension == 3:
        return model
    channels = [i * fields.num_slices + fields.num_slices // 2 for i in range(num_inputs)]
    return CentralSlicePrior(model, channels, (fields.slicing_axes or (0,))[0])


class ResidualOutput(nn.Module):
    """``network(x) + x[:, channel]``: the network predicts the difference to one input channel.

    Has no parameters of its own; :meth:`state_dict` of the inner network is what checkpoints store, so
    the weights load into a plain ``build_network`` result too.
    """

    def __init__(self, network: nn.Module, channel: int) -> None:
        super().__init__()
        self.network = network
        self.channel = int(channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) + x[:, self.channel:self.channel + 1]


def build_synthesis_network(config: ConfigurationPlan | Mapping, inputs: list[str], num_slices: int = 1,
                            residual_input: str | None = None) -> nn.Module:
    """The generator for a plans configuration: ``len(inputs) * num_slices`` input channels, 1 linear output."""
    fields = network_fields(config)
    network = build_network(fields.architecture, len(inputs) * num_slices, 1, dimension=fields.dimension)
    if fields.architecture.prior:
        network = PriorResidual(network, build_prior(fields.architecture.prior, config, len(inputs)))
    if residual_input:
        network = ResidualOutput(network, input_channel_index(inputs, residual_input, num_slices))
    return network


def build_segmentation_network(config: ConfigurationPlan | Mapping, num_inputs: int, num_classes: int) -> nn.Module:
    """The plans' network with ``num_inputs`` input channels and ``num_classes`` logit outputs (no prior)."""
    fields = network_fields(config)
    if fields.dimension != 3:
        raise InputError("The segmenter needs a 3D configuration (e.g. 3d_fullres)")
    return build_network(fields.architecture, num_inputs, num_classes, dimension=3)


def inner_network(network: nn.Module) -> nn.Module:
    """Strip DDP / torch.compile / residual wrappers: the module whose state dict is stored."""
    while True:
        if hasattr(network, "module") and isinstance(network.module, nn.Module):      # DDP
            network = network.module
        elif hasattr(network, "_orig_mod"):                                               # torch.compile
            network = network._orig_mod
        elif isinstance(network, ResidualOutput):
            network = network.network
        else:
            return network
