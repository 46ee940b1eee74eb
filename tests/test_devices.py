"""One device rule for planning, training and inference (synthunet/utilities/devices.py)."""
from __future__ import annotations

import pytest
import torch

from synthunet.errors import InputError
from synthunet.utilities.devices import default_device, resolve_device


def test_named_devices_are_checked():
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("CPU").type == "cpu"
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError, match="Unknown device 'tpu'; use cpu, cuda or mps"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_an_unavailable_gpu_is_an_error_that_says_what_to_use():
    with pytest.raises(InputError, match="sees no CUDA GPU; use --device cpu"):
        resolve_device("cuda")
    assert default_device() == "cpu" and resolve_device("auto", include_mps=False).type == "cpu"
    assert resolve_device(None, include_mps=False).type == "cpu"


def test_auto_prefers_cuda_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda" and resolve_device("auto").type == "cuda"
