"""VGG-19 perceptual loss (seed 000), without torchvision.

:class:`VGG19Features` rebuilds ``torchvision.models.vgg19().features`` layer by layer with the same
indices (conv 3x3 / ReLU / max-pool, configuration "E"), so a torchvision state dict loads into it:
keys ``features.N.weight`` (a full VGG-19 state dict; the classifier is ignored) or ``N.weight``. The
ReLUs are not in-place so that the conv outputs we read stay intact.

Weights are never downloaded: pass a local file (``--vgg_weights`` or ``$SYNTHUNET_VGG19_WEIGHTS``), a
``.pth``/``.pt`` state dict (read with ``torch.load(weights_only=True)``) or a ``.safetensors`` file.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from synthunet import env
from synthunet.errors import SynthUNetError

VGG_WEIGHTS_ENV = env.VGG19_WEIGHTS
#: torchvision's VGG-19 ("E") feature configuration: channels per conv, "M" = 2x2 max-pool
VGG19_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M"]
#: seed 000: conv layers 2, 7, 14, 21, 28 of ``features`` with weights lambda_l
SEED000_LAYERS = (2, 7, 14, 21, 28)
SEED000_WEIGHTS = (2e-4, 1e-4, 1e-4, 2e-4, 5e-4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(SynthUNetError, FileNotFoundError):
    """The VGG-19 weights file is not given, missing or does not fit."""


class VGG19Features(nn.Sequential):
    """``vgg19().features`` (37 layers) with torchvision's indices."""

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        super().__init__(*layers)

    def feature_maps(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the given layer indices (run only as far as the deepest one)."""
        wanted, outputs = set(layers), {}
        for index, layer in enumerate(self):
            x = layer(x)
            if index in wanted:
                outputs[index] = x
            if index >= max(layers):
                break
        return [outputs[i] for i in layers]


def resolve_vgg_weights(path: str | os.PathLike | None) -> Path:
    """The weights file from the argument or ``$SYNTHUNET_VGG19_WEIGHTS``; a clear error if there is none."""
    path = path or env.get(VGG_WEIGHTS_ENV)
    if not path:
        raise VGGWeightsError(
            "The perceptual loss needs pretrained VGG-19 weights, and synthUNet never downloads them. Save "
            "torchvision's vgg19 state dict (e.g. torch.save(torchvision.models.vgg19(weights='DEFAULT').state_dict(), "
            f"'vgg19.pth') on a machine that has torchvision) and pass --vgg_weights vgg19.pth or set {VGG_WEIGHTS_ENV}.")
    path = Path(path).expanduser()
    if not path.is_file():
        raise VGGWeightsError(f"VGG-19 weights file {path} does not exist")
    return path


def load_vgg19_features(path: str | os.PathLike | None) -> VGG19Features:
    """A frozen :class:`VGG19Features` with weights from a local file (see :func:`resolve_vgg_weights`)."""
    path = resolve_vgg_weights(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise VGGWeightsError(f"{path}: reading .safetensors needs the 'safetensors' package; "
                                  "save the state dict as .pth instead") from error
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - whatever the file makes torch.load raise, the file is at fault
            kind = "holds content other than tensors" if isinstance(error, pickle.UnpicklingError) else \
                f"is corrupt or not a PyTorch file ({type(error).__name__})"
            raise VGGWeightsError(f"{path} {kind}; synthUNet reads only a VGG-19 state dict of tensors") from None
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path} does not hold a state dict")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    network = VGG19Features()
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise VGGWeightsError(f"{path} is not a VGG-19 (features) state dict: {error}") from error
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


class PerceptualLoss(nn.Module):
    """``sum_l ||lambda_l (phi_l(G(x)) - phi_l(y))||_2^2`` (seed 000), averaged over the 2D images.

    Read literally: lambda_l scales the feature difference inside the squared L2 norm, which is summed over
    channels and pixels of each image. Grey-scale slices are repeated to 3 channels and normalised with
    the ImageNet mean/std (our intensities are on a [0, 1] scale). 3D patches ``(B, 1, D, H, W)`` are
    cut into their ``D`` slices along the first spatial axis (z) and treated as ``B * D`` images.
    """

    def __init__(self, features: VGG19Features, layers: Sequence[int] = SEED000_LAYERS,
                 weights: Sequence[float] = SEED000_WEIGHTS) -> None:
        super().__init__()
        if len(layers) != len(weights):
            raise ValueError("one weight per VGG layer is needed")
        self.features = features
        self.layers = list(layers)
        self.weights = list(weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.features.eval()  # always frozen
        return self

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = x.permute(0, 2, 1, 3, 4).reshape(-1, x.shape[1], x.shape[3], x.shape[4])
        return (x.float().expand(-1, 3, -1, -1) - self.mean) / self.std

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        images = self._images(torch.cat([prediction, target], dim=0))
        n = images.shape[0] // 2
        total = images.new_zeros(())
        for weight, fmap in zip(self.weights, self.features.feature_maps(images, self.layers)):
            total = total + ((weight * (fmap[:n] - fmap[n:])) ** 2).sum() / n
        return total
