"""The per-epoch learning-rate schedule against PyTorch's own schedulers."""
from __future__ import annotations

import math

import pytest
import torch

from synthunet.training.optim import LRSchedule


def _torch_reference(kind: str, initial_lr: float, epochs: int) -> list[float]:
    """nnU-Net's poly (PolynomialLR, power 0.9), CosineAnnealingLR down to 0, or a constant rate."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=initial_lr)
    scheduler = {"poly": lambda: torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=epochs, power=0.9),
                 "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
                 "constant": lambda: torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)}[kind]()
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("kind", ["poly", "cosine", "constant"])
def test_schedule_matches_torch_schedulers_and_sets_every_optimiser(kind):
    optimizers = [torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0) for _ in range(2)]
    optimizers[1].param_groups[0]["lr_scale"] = 0.5  # a discriminator with its own rate
    schedule = LRSchedule(optimizers, 2e-3, 40, kind, 0.9)
    ours = [schedule.step(epoch) for epoch in range(40)]
    assert ours == pytest.approx(_torch_reference(kind, 2e-3, 40), rel=1e-6, abs=1e-12)
    assert optimizers[0].param_groups[0]["lr"] == pytest.approx(ours[-1])
    assert optimizers[1].param_groups[0]["lr"] == pytest.approx(0.5 * ours[-1])
    assert not math.isclose(ours[0], ours[-1]) or kind == "constant"
