"""The EMA of network weights (Real-ESRGAN's ``ema_decay``) against torch's own ``AveragedModel`` EMA."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from synthunet.training.weight_average import WeightAverage


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 3, 3), nn.BatchNorm3d(3), nn.Flatten(), nn.LazyLinear(2))


def _train_steps(network: nn.Module, steps: int, callback) -> None:
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05)
    for _ in range(steps):
        loss = (network(torch.randn(2, 1, 5, 5, 5)) - 1.0).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        callback()


def test_weight_average_matches_torch_averaged_model():
    network = _network()
    network(torch.randn(2, 1, 5, 5, 5))  # materialise the lazy layer
    average = WeightAverage(network, decay=0.9)
    reference = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    reference.update_parameters(network)  # torch's first update copies: both start from the current weights

    def both() -> None:
        average.update(network)
        reference.update_parameters(network)

    _train_steps(network, 12, both)
    averaged = average.state_dict()
    for name, expected in reference.module.named_parameters():
        assert torch.allclose(averaged[name], expected, atol=1e-6), name
    # an average, not the last step's weights (the conv bias before BatchNorm gets no gradient, so not that one)
    assert not torch.allclose(averaged["3.weight"], network[3].weight, atol=1e-4)
    # buffers (BatchNorm running statistics, its step counter) are the network's, not averaged
    for name, buffer in network.named_buffers():
        assert torch.equal(averaged[name], buffer), name


def test_weight_average_follows_the_decay_on_a_scalar():
    network = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        network.weight.fill_(0.0)
    average = WeightAverage(network, decay=0.75)
    for value in (4.0, 4.0, -8.0):
        with torch.no_grad():
            network.weight.fill_(value)
        average.update(network)
    # 0 -> 0.25 * 4 = 1 -> 0.75 + 1 = 1.75 -> 1.3125 - 2 = -0.6875
    assert float(average.state_dict()["weight"]) == pytest.approx(-0.6875)


def test_weight_average_state_round_trip_and_checks():
    network = nn.Linear(3, 2)
    average = WeightAverage(network, decay=0.5)
    state = {name: value + 1.0 for name, value in network.state_dict().items()}
    average.load_state_dict(state)
    assert all(torch.equal(average.state_dict()[name], value) for name, value in state.items())
    with pytest.raises(KeyError, match="EMA weights"):
        average.load_state_dict({"weight": state["weight"]})
    for decay in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(network, decay)
