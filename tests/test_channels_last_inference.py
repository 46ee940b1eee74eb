"""Channels-last CPU inference of the 3D U-Net (issue 21): the same numbers as the contiguous path.

References: ``torch.nn.functional.instance_norm`` on contiguous memory, a float64 NumPy instance norm, and the
sliding window run with ``channels_last=False``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from synthunet.architectures.instance_norm import InstanceNorm3d, is_channels_last_3d
from synthunet.architectures.unet import PlainUNet
from synthunet.inference import time_budget
from synthunet.prediction.sliding_window import (default_batch_size, predict_sliding_window,
                                                 use_channels_last)

UNET = dict(n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=[[3, 3, 3]] * 3,
            strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=2, n_conv_per_stage_decoder=2)


def numpy_instance_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    x = x.astype(np.float64)
    mean = x.mean(axis=(2, 3, 4), keepdims=True)
    variance = x.var(axis=(2, 3, 4), keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight[None, :, None, None, None] + bias[None, :, None, None, None]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("offset", [0.0, 50.0, 3000.0])  # a mean up to 1000 standard deviations away from 0
@pytest.mark.parametrize("inplace", [False, True])
def test_channels_last_instance_norm_equals_the_float64_reference(offset, inplace):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, 6, 7, 9)) * 3 + offset).astype(np.float32)
    norm = InstanceNorm3d(5, affine=True, inplace=inplace)
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(rng.random(5, dtype=np.float32) + 0.5))
        norm.bias.copy_(torch.from_numpy(rng.standard_normal(5).astype(np.float32)))
        out = norm(channels_last(torch.from_numpy(x)))
    assert is_channels_last_3d(out)
    expected = numpy_instance_norm(x, norm.weight.detach().numpy(), norm.bias.detach().numpy())
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-4 if offset > 1000 else 2e-5)


def test_contiguous_input_takes_torch_instance_norm():
    x = torch.randn(2, 3, 4, 5, 6)
    norm = InstanceNorm3d(3, affine=True, inplace=True)
    with torch.no_grad():
        out = norm(x)
        reference = F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=1e-5)
    assert torch.equal(out, reference)


def test_without_affine_parameters_it_only_standardises():
    x = torch.randn(1, 2, 5, 4, 6) * 7 + 2
    out = InstanceNorm3d(2, affine=False)(channels_last(x))
    expected = numpy_instance_norm(x.numpy(), np.ones(2), np.zeros(2))
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=2e-5)


def test_in_place_only_without_autograd_and_gradients_match_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 6)
    norm = InstanceNorm3d(3, affine=True, inplace=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    grad_out = torch.randn(2, 3, 4, 5, 6)
    ours_input = channels_last(x.clone()).requires_grad_(True)
    (norm(ours_input) * grad_out).sum().backward()  # with autograd on it must not overwrite its input
    assert torch.equal(ours_input.detach(), channels_last(x))
    ours_weight_grad = norm.weight.grad.clone()
    norm.weight.grad = None
    torch_input = x.clone().requires_grad_(True)
    (F.instance_norm(torch_input, weight=norm.weight, bias=norm.bias, eps=1e-5) * grad_out).sum().backward()
    np.testing.assert_allclose(ours_input.grad.numpy(), torch_input.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours_weight_grad.numpy(), norm.weight.grad.numpy(), atol=1e-4)
    with torch.inference_mode():
        y = channels_last(x.clone())
        norm(y)
    assert not torch.equal(y, channels_last(x))  # in inference the conv output it normalises is reused


def test_unet_output_is_the_same_in_either_layout():
    torch.manual_seed(1)
    network = PlainUNet(3, 2, 1, **UNET).eval()
    x = torch.rand(3, 2, 16, 24, 16)
    with torch.inference_mode():
        reference = network(x)
        out = network(channels_last(x))
    np.testing.assert_allclose(out.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)


class Shallow(nn.Module):
    """A network without a channels-last preference."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_channels_last_is_chosen_for_a_unet_on_a_cpu_in_3d_only():
    unet = PlainUNet(3, 2, 1, **UNET)
    assert use_channels_last(unet, "cpu", 3)
    assert use_channels_last(nn.Sequential(unet), "cpu", 3)  # wrapped, e.g. a prior residual
    assert not use_channels_last(unet, "cpu", 2)
    assert not use_channels_last(unet, "meta", 3)
    assert not use_channels_last(Shallow(), "cpu", 3)


@pytest.mark.parametrize("mirror", [(), (0, 1, 2)])
def test_sliding_window_gives_the_same_prediction_in_either_layout(mirror):
    torch.manual_seed(2)
    network = PlainUNet(3, 2, 1, **UNET).eval()
    volume = torch.rand(2, 21, 30, 19)
    contiguous = predict_sliding_window(network, volume, [8, 16, 8], 0.5, mirror, channels_last=False)
    fast = predict_sliding_window(network, volume, [8, 16, 8], 0.5, mirror)
    np.testing.assert_allclose(fast.numpy(), contiguous.numpy(), rtol=1e-5, atol=1e-5)


def test_a_lone_last_window_is_predicted_as_on_its_own():
    seen = []

    class Recording(Shallow):
        def forward(self, x):
            seen.append(x.shape[0])
            return super().forward(x)

    torch.manual_seed(3)
    network = Recording().eval()
    volume = torch.rand(2, 8, 8, 24)  # 5 windows of 8^3 at step 0.5: batches of 2, 2 and 1
    reference = predict_sliding_window(network, volume, [8, 8, 8], 0.5, batch_size=1)
    seen.clear()
    out = predict_sliding_window(network, volume, [8, 8, 8], 0.5, batch_size=2)
    assert seen == [2, 2, 2]  # the lone window ran beside a copy of itself
    np.testing.assert_allclose(out.numpy(), reference.numpy(), rtol=1e-6, atol=1e-6)


def test_channels_last_batches_are_larger_on_a_cpu():
    assert default_batch_size([32, 48, 32], "cpu", channels_last=True) == 5
    assert default_batch_size([32, 48, 32], "cpu") == 2
    assert default_batch_size([160, 192, 160], "cpu", channels_last=True) == 1


def test_the_time_budget_measures_the_layout_the_window_gets():
    layouts = []

    class Probe(PlainUNet):
        def forward(self, x):
            layouts.append(is_channels_last_3d(x))
            return super().forward(x)

    time_budget.seconds_per_window(Probe(3, 2, 1, **UNET).eval(), (2, 8, 8, 8), 2)
    assert layouts == [True, True]
