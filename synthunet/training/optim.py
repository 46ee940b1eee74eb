"""Optimiser and learning-rate schedule from the plans' ``training`` block.

The schedule is a tiny class with a plain-dict state (no pickled lambdas in checkpoints): the learning
rate of epoch ``e`` is ``initial_lr * factor * shape(e / num_epochs)``; ``factor`` lets a trainer scale
it (seed 001's second stage uses lr / 10).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from synthunet.errors import InputError
from synthunet.plans import TrainingPlan

SCHEDULES = ("poly", "constant", "cosine")


def build_optimizer(parameters: Iterable[torch.nn.Parameter], training: TrainingPlan) -> torch.optim.Optimizer:
    """AdamW (default; plans ``betas``) or SGD with Nesterov momentum 0.99 (nnU-Net), with the plans' lr and
    weight decay."""
    name = training.optimizer.lower()
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=training.initial_lr, betas=training.betas,
                                 weight_decay=training.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=training.initial_lr, weight_decay=training.weight_decay, momentum=0.99,
                               nesterov=True)
    raise InputError(f"Unknown optimizer {training.optimizer!r} in the plans; use 'adamw' or 'sgd'")


class LRSchedule:
    """Per-epoch learning rate: ``poly`` (``(1 - e/E)^0.9``, nnU-Net), ``constant`` or ``cosine``."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], initial_lr: float, num_epochs: int,
                 kind: str = "poly", exponent: float = 0.9) -> None:
        if kind not in SCHEDULES:
            raise InputError(f"Unknown lr_schedule {kind!r} in the plans; use one of {SCHEDULES}")
        self.optimizers = optimizers
        self.initial_lr = float(initial_lr)
        self.num_epochs = int(num_epochs)
        self.kind = kind
        self.exponent = exponent
        self.factor = 1.0

    def lr_at(self, epoch: int) -> float:
        progress = min(max(epoch / max(self.num_epochs, 1), 0.0), 1.0)
        if self.kind == "poly":
            shape = (1.0 - progress) ** self.exponent
        elif self.kind == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0
        return self.initial_lr * self.factor * shape

    def step(self, epoch: int) -> float:
        """Set the learning rate of every optimiser for ``epoch``; return it. A parameter group with an
        ``lr_scale`` entry gets that multiple of it (e.g. a discriminator with its own initial rate)."""
        lr = self.lr_at(epoch)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict:
        return {"kind": self.kind, "initial_lr": self.initial_lr, "num_epochs": self.num_epochs,
                "exponent": self.exponent, "factor": self.factor}

    def load_state_dict(self, state: dict) -> None:
        self.factor = float(state.get("factor", 1.0))
