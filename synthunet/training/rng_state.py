"""RNG states of torch, NumPy and Python as plain types, so a resumed training continues the same streams
(stored in ``checkpoint_latest``, loaded with ``weights_only=True``)."""
from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng_state() -> dict:
    """RNG states of torch (CPU and CUDA), NumPy's global generator and Python's ``random``, as plain types."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [str(kind), [int(k) for k in keys], int(position), int(has_gauss), float(cached)],
             "python": [int(version), [int(v) for v in internal], gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
