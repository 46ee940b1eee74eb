"""Inference computes a closed-form prior once on the whole volume, not inside every sliding window.

References: scipy.ndimage's zero-padded Gaussian filter and a NumPy polynomial for the regression, and the
sliding window of the residual network alone for the prior-plus-network sum.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from synthunet.architectures.baselines import QuantileMapping, VoxelRegression, polynomial_terms
from synthunet.architectures.model_network import PriorResidual
from synthunet.prediction.sliding_window import predict_volume_sliding_window, split_prior

SIGMAS = [[1.0, 1.0, 1.0], [3.0, 2.0, 3.0]]


def _regression(seed: int = 0, degree: int = 2) -> VoxelRegression:
    model = VoxelRegression(3, 2, sigmas_voxels=SIGMAS, degree=degree)
    generator = torch.Generator().manual_seed(seed)
    model.coefficients.copy_(0.3 * torch.randn(len(model.terms), generator=generator))
    model.feature_mean.copy_(0.1 * torch.randn(model.num_features, generator=generator))
    model.feature_std.copy_(1 + 0.2 * torch.rand(model.num_features, generator=generator))
    return model


def _volume(shape=(30, 26, 34), seed: int = 1) -> torch.Tensor:
    x = torch.zeros((2, *shape))
    x[:, 3:-3, 2:-2, 4:-4] = 1 + torch.rand((2, shape[0] - 6, shape[1] - 4, shape[2] - 8),
                                           generator=torch.Generator().manual_seed(seed))
    return x


def _numpy_regression(model: VoxelRegression, x: np.ndarray) -> np.ndarray:
    """The regression on a whole volume with scipy's zero-padded Gaussian (truncate 3) and a NumPy polynomial."""
    stack = [x] + [np.stack([gaussian_filter(c, sigmas, mode="constant", truncate=3.0) for c in x])
                   for sigmas in model.sigmas_voxels]
    features = np.concatenate(stack).astype(np.float64)
    mean, std = model.feature_mean.double().numpy(), model.feature_std.double().numpy()
    features = (features - mean[:, None, None, None]) / std[:, None, None, None]
    out = np.zeros(x.shape[1:])
    for coefficient, term in zip(model.coefficients.double().numpy(), polynomial_terms(model.num_features,
                                                                                       model.degree)):
        column = np.full(x.shape[1:], coefficient)
        for index in term:
            column = column * features[index]
        out += column
    return out * (x != 0).any(axis=0)


class _Residual(nn.Module):
    """A small convolutional "network" with a patch-dependent output (zero padding at the window border)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, 5, padding=2)
        torch.nn.init.normal_(self.conv.weight, std=0.1, generator=torch.Generator().manual_seed(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_split_prior_names_the_parts():
    residual, prior = _Residual(), _regression()
    assert split_prior(PriorResidual(residual, prior)) == (prior, residual)
    assert split_prior(prior) == (prior, None)
    assert split_prior(QuantileMapping(3, 2))[1] is None
    assert split_prior(residual) == (None, residual)


@pytest.mark.parametrize("degree", [2, 3])
def test_closed_form_model_is_predicted_on_the_whole_volume(degree):
    model, x = _regression(degree=degree), _volume()
    expected = _numpy_regression(model, x.double().numpy())
    for mirroring in (False, True):
        ours = predict_volume_sliding_window(model, x, [16, 16, 16], use_mirroring=mirroring)[0].numpy()
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    # inside each 16^3 window (the behaviour before): the local means are cut at the window borders
    per_window = predict_volume_sliding_window(model, x, [16, 16, 16], use_mirroring=False,
                                               prior_per_window=True)[0].numpy()
    assert np.abs(per_window - expected).max() > 0.05


def test_prior_is_added_once_to_the_windowed_residual():
    prior, residual, x = _regression(), _Residual(), _volume()
    network = PriorResidual(residual, prior)
    nn.init.normal_(residual.conv.weight, std=0.1)  # PriorResidual zeroes the output layer; make it count
    ours = predict_volume_sliding_window(network, x, [16, 16, 16], use_mirroring=False)[0].numpy()
    windowed_residual = predict_volume_sliding_window(residual, x, [16, 16, 16], use_mirroring=False)[0].numpy()
    np.testing.assert_allclose(ours, windowed_residual + _numpy_regression(prior, x.double().numpy()),
                               rtol=1e-4, atol=1e-4)
    per_window = predict_volume_sliding_window(network, x, [16, 16, 16], use_mirroring=False,
                                               prior_per_window=True)[0].numpy()
    assert np.abs(per_window - ours).max() > 0.05


def test_regression_forward_equals_its_design_matrix():
    model = _regression(seed=4)
    x = _volume((12, 13, 14))[None]
    with torch.no_grad():
        reference = (model.design(model.features(x)) * model.coefficients.reshape(1, -1, 1, 1, 1)).sum(1, True)
        reference = reference * (x != 0).any(dim=1, keepdim=True)
        torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-4)
