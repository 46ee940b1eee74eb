"""Discriminators and adversarial objectives.

* :class:`PatchDiscriminator` - seed 000: a 5-layer PatchGAN (pix2pix) with spectral normalisation on
  every conv and no other normalisation, trained with the least-squares (LSGAN) objective; with
  ``tail_kernel=4`` the classic 70x70 PatchGAN of seed 003 (unconditional there), and with ``norm="instance"``
  CycleGAN's version of it (instance norm after every conv but the first and the last, no spectral norm).
* :class:`UNetDiscriminator` - seed 004's Real-ESRGAN: a U-Net with skip connections and spectral norm that
  scores every voxel.
* :class:`ClassifierDiscriminator` - seed 002: 3 x (conv 3 - BN - LeakyReLU - max-pool) with 32/64/128
  features, a conv with 256 features, then fully connected 512 -> 128 -> 1, trained with binary cross
  entropy (on logits; the sigmoid is inside the loss).

In the paired recipes the PatchGAN and the classifier are conditional: they see the network input concatenated
with the real or synthesised target. The U-Net discriminator of the super-resolution recipes sees the target
alone, as in Real-ESRGAN.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torch.nn.utils.parametrizations import spectral_norm

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_ADAPTIVE_POOL = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
#: PatchDiscriminator normalisations
PATCHGAN_NORMS = ("spectral", "instance")


def patchgan_n_down(patch_size: tuple[int, ...], tail_kernel: int = 3) -> int:
    """Stride-2 layers of a PatchGAN: 3 unless the patch is too small, then fewer (at least 1). With
    ``tail_kernel`` 4 the two stride-1 layers shrink the map by one voxel each, so >= 3 voxels must remain."""
    n_down = max(1, min(3, int(math.log2(max(2, min(patch_size)))) - 1))
    if tail_kernel == 4:
        while n_down > 1 and min(patch_size) // 2 ** n_down < 3:
            n_down -= 1
    return n_down


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_down`` conv(4, stride 2) layers, then two conv(``tail_kernel``, stride 1) layers -> a map
    of scores (padding 1 everywhere).

    ``n_down`` is 3 (5 layers in all, as seed 000) unless the patch is too small, then fewer. ``tail_kernel`` 3
    is seed 000's; 4 is pix2pix's classic 70x70 PatchGAN (seed 003): C64-C128-C256 stride 2, C512 and the
    score layer stride 1, receptive field 70 (:func:`patchgan_receptive_field`).
    Called with several tensors it scores their concatenation (a conditional discriminator: condition, image);
    with one, that tensor alone (unconditional).

    ``norm``: ``"spectral"`` (default): spectral normalisation on every conv, nothing else. ``"instance"``:
    CycleGAN's PatchGAN, plain convs with instance norm (no affine parameters) after every conv but the first
    and the score layer. The instance statistics couple each score to the whole patch, beyond its receptive field.
    """

    def __init__(self, in_channels: int, dimension: int, patch_size: tuple[int, ...], base_features: int = 64,
                 max_features: int = 512, tail_kernel: int = 3, norm: str = "spectral") -> None:
        super().__init__()
        if tail_kernel not in (3, 4):
            raise ValueError(f"tail_kernel must be 3 or 4, got {tail_kernel}")
        if norm not in PATCHGAN_NORMS:
            raise ValueError(f"norm must be one of {', '.join(PATCHGAN_NORMS)}, got {norm!r}")
        conv = _CONV[dimension]

        def block(channels: int, features: int, kernel: int, stride: int, first: bool = False) -> list[nn.Module]:
            layer = conv(channels, features, kernel, stride, 1)
            if norm == "spectral":
                return [spectral_norm(layer), nn.LeakyReLU(0.2, inplace=True)]
            return [layer, *([] if first else [_INSTANCE_NORM[dimension](features)]), nn.LeakyReLU(0.2, inplace=True)]

        n_down = patchgan_n_down(tuple(patch_size), tail_kernel)
        layers: list[nn.Module] = []
        channels, features = in_channels, base_features
        for level in range(n_down):
            layers += block(channels, features, 4, 2, first=level == 0)
            channels, features = features, min(features * 2, max_features)
        score = conv(features, 1, tail_kernel, 1, 1)
        layers += [*block(channels, features, tail_kernel, 1), spectral_norm(score) if norm == "spectral" else score]
        self.model = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1))


class UNetDiscriminator(nn.Module):
    """Real-ESRGAN's U-Net discriminator (seed 004 §3.8.5), in 2D or 3D: one score per voxel.

    A plain conv 3 to ``base_features``; ``n_down`` spectrally normalised conv 4 / stride 2 layers doubling the
    features (3 unless the patch is small, as :func:`patchgan_n_down`); back up, each level an upsampling to the
    skip's shape (linear), a spectrally normalised conv 3 halving the features and the skip added; two more
    spectrally normalised conv 3 layers and a plain conv 3 to the score map. Convs under spectral norm have no
    bias, as in Real-ESRGAN. Called with several tensors it scores their concatenation; with one, that tensor.
    """

    def __init__(self, in_channels: int, dimension: int, patch_size: tuple[int, ...], base_features: int = 16) -> None:
        super().__init__()
        conv = _CONV[dimension]
        n_down = patchgan_n_down(tuple(patch_size))
        widths = [base_features * 2 ** level for level in range(n_down + 1)]
        self.stem = conv(in_channels, base_features, 3, 1, 1)
        self.down = nn.ModuleList(spectral_norm(conv(widths[i], widths[i + 1], 4, 2, 1, bias=False))
                                  for i in range(n_down))
        self.up = nn.ModuleList(spectral_norm(conv(widths[i + 1], widths[i], 3, 1, 1, bias=False))
                                for i in reversed(range(n_down)))
        self.tail = nn.ModuleList(spectral_norm(conv(base_features, base_features, 3, 1, 1, bias=False))
                                  for _ in range(2))
        self.score = conv(base_features, 1, 3, 1, 1)
        self.mode = {2: "bilinear", 3: "trilinear"}[dimension]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
        act = nn.functional.leaky_relu
        skips = [act(self.stem(x), 0.2)]
        for layer in self.down:
            skips.append(act(layer(skips[-1]), 0.2))
        x = skips.pop()
        for layer in self.up:
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[2:], mode=self.mode, align_corners=False)
            x = act(layer(x), 0.2) + skip
        for layer in self.tail:
            x = act(layer(x), 0.2)
        return self.score(x)


def patchgan_receptive_field(discriminator: PatchDiscriminator) -> int:
    """Receptive field (voxels per axis) of one output score: ``r <- (r - 1) * stride + kernel``, last layer first."""
    field = 1
    convs = [m for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    for layer in reversed(convs):
        field = (field - 1) * layer.stride[0] + layer.kernel_size[0]
    return field


class ClassifierDiscriminator(nn.Module):
    """Seed 002's CNN discriminator; returns one logit per sample. An adaptive average pool to 2 voxels
    per axis before the fully connected layers makes it work for any patch size (2048 features in 3D
    with 256 channels, as in the seed's 32^3 setting)."""

    def __init__(self, in_channels: int, dimension: int, features: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        conv, bn, pool = _CONV[dimension], _BN[dimension], _POOL[dimension]
        layers: list[nn.Module] = []
        channels = in_channels
        for out in features[:-1]:
            layers += [conv(channels, out, 3, 1, 1), bn(out), nn.LeakyReLU(0.2, inplace=True), pool(2, 2, ceil_mode=True)]
            channels = out
        layers += [conv(channels, features[-1], 3, 1, 1), bn(features[-1]), nn.LeakyReLU(0.2, inplace=True),
                   _ADAPTIVE_POOL[dimension](2), nn.Flatten(),
                   nn.Linear(features[-1] * 2 ** dimension, 512), nn.LeakyReLU(0.2, inplace=True),
                   nn.Linear(512, 128), nn.LeakyReLU(0.2, inplace=True), nn.Linear(128, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([condition, image], dim=1))


def lsgan_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Seed 000 eq. 5: ``E (D(y) - 1)^2 + E D(G(x))^2``."""
    return ((real.float() - 1) ** 2).mean() + (fake.float() ** 2).mean()


def lsgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Seed 000 eq. 6: ``E (D(G(x)) - 1)^2``."""
    return ((fake.float() - 1) ** 2).mean()


def bce_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Seed 002: ``BCE(D(Y), 1) + BCE(D(G(X)), 0)`` on logits."""
    real, fake = real.float(), fake.float()
    return (binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def bce_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """Seed 002: ``L_ADV = BCE(D(G(X)), 1)`` on logits."""
    fake = fake.float()
    return binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
