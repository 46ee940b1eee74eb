"""The synthesis network of a model: ``build_network`` from the plans, plus the optional long residual
connection from one input channel (seed 002)."""
from __future__ import annotations

import torch
from torch import nn

from synthunet.architectures import build_network
from synthunet.errors import InputError


def input_channel_index(inputs: list[str], channel: str, num_slices: int = 1) -> int:
    """Network input channel holding input sequence ``channel`` (its central slice for 2.5D: ``i * k + k // 2``)."""
    matches = [i for i, name in enumerate(inputs) if name.lower() == channel.lower()]
    if not matches:
        raise InputError(f"{channel!r} is not one of the network inputs {inputs}")
    return matches[0] * num_slices + num_slices // 2


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


def build_synthesis_network(config: dict, inputs: list[str], num_slices: int = 1,
                            residual_input: str | None = None) -> nn.Module:
    """The generator for a plans configuration: ``len(inputs) * num_slices`` input channels, 1 linear output."""
    network = build_network(config["architecture"], len(inputs) * num_slices, 1, dimension=int(config["dimension"]))
    prior = config["architecture"].get("prior")
    if prior:
        from synthunet.training.prior import PriorResidual, build_prior
        network = PriorResidual(network, build_prior(prior, config, len(inputs)))
    if residual_input:
        network = ResidualOutput(network, input_channel_index(inputs, residual_input, num_slices))
    return network


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
