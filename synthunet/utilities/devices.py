"""Which torch device a command runs on: one rule for planning, training and inference."""
from __future__ import annotations

import torch

from synthunet.errors import InputError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def default_device(include_mps: bool = False) -> str:
    """``cuda`` when torch sees a GPU, else ``mps`` (only with ``include_mps``) when available, else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if include_mps and _mps_available() else "cpu"


def resolve_device(device: str | torch.device | None = "auto", include_mps: bool = True) -> torch.device:
    """``auto`` (or None) -> :func:`default_device`; a named device is checked: an unavailable or unknown one raises
    :class:`~synthunet.errors.InputError` saying what to use instead."""
    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).lower()
    if name == "auto":
        return torch.device(default_device(include_mps))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but PyTorch sees no CUDA GPU; use --device cpu")
    if name == "mps" and not _mps_available():
        raise InputError("--device mps was requested but MPS is not available; use --device cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise InputError(f"Unknown device {device!r}; use cpu, cuda or mps")
    return torch.device(name)
