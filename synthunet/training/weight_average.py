"""An exponential moving average (EMA) of a network's weights, as Real-ESRGAN keeps of its generator.

Real-ESRGAN trains both of its stages with ``ema_decay: 0.999`` and releases the averaged weights; a trainer with
``ema_decay > 0`` does the same (documentation/trainers/super_resolution.md).
"""
from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` per parameter after every :meth:`update`.

    Starts from the network's weights; buffers (not trained) are copied, not averaged.
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"The EMA decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = {name: value.detach().clone() for name, value in network.state_dict().items()}
        self.parameter_names = {name for name, _ in network.named_parameters()}

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Fold the network's current weights into the average."""
        for name, value in network.state_dict().items():
            average = self.averaged[name]
            if name in self.parameter_names and average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - self.decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (a state dict of the network)."""
        return self.averaged

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged weights (keys must match the network's)."""
        if set(state) != set(self.averaged):
            raise KeyError("The EMA weights do not match the network's parameters")
        for name, value in state.items():
            self.averaged[name].copy_(value)


__all__ = ["WeightAverage"]
