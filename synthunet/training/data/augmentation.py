"""Data augmentation with batchgenerators.

Spatial transforms (rotation, scaling, mirroring) move inputs, target and segmentation together: while
they run, the target is the last channel of ``data`` (cubic interpolation, like the inputs) and the
segmentation is ``seg`` (nearest neighbour; -1 beyond the edge). Then :class:`SplitTarget` moves the
target into its own key, and the intensity transforms (noise, brightness, contrast, gamma) see only the
input channels, never the target.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (BrightnessMultiplicativeTransform,
                                                         ContrastAugmentationTransform, GammaTransform)
from batchgenerators.transforms.noise_transforms import GaussianNoiseTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

from synthunet.training.data.sampling import SEG_OUTSIDE


@dataclass(frozen=True)
class AugmentationParams:
    """Probabilities and ranges of the augmentations (per sample). Intensities are on the [0, 1] scale."""

    rotation_deg: float = 15.0          # +- about every axis (3D) or in-plane (2.5D); seed 000 uses +-15
    p_rotation: float = 0.2
    scale: tuple[float, float] = (0.85, 1.15)
    p_scale: float = 0.2
    mirror: bool = True                 # every spatial axis with probability 0.5
    noise_variance: tuple[float, float] = (0.0, 0.001)
    p_noise: float = 0.1
    brightness: tuple[float, float] = (0.75, 1.25)
    p_brightness: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    gamma: tuple[float, float] = (0.7, 1.5)
    p_gamma: float = 0.3

    @property
    def max_rotation(self) -> float:
        return float(np.deg2rad(self.rotation_deg))


def without_intensity_augmentation(params: AugmentationParams) -> AugmentationParams:
    """The same spatial augmentation with every intensity augmentation switched off."""
    return dataclasses.replace(params, p_noise=0.0, p_brightness=0.0, p_contrast=0.0, p_gamma=0.0)


class SplitTarget(AbstractTransform):
    """Move the last channel of ``data`` to ``target`` (so later transforms cannot touch it).

    With ``reference_channel`` set, a copy of that input channel is kept as ``reference`` before any
    intensity augmentation (seed 001's local loss compares the target with the un-augmented T1N).
    """

    def __init__(self, reference_channel: int | None = None) -> None:
        self.reference_channel = reference_channel

    def __call__(self, **batch):
        batch["target"] = np.ascontiguousarray(batch["data"][:, -1:])
        batch["data"] = np.ascontiguousarray(batch["data"][:, :-1])
        if self.reference_channel is not None:
            c = self.reference_channel
            batch["reference"] = batch["data"][:, c:c + 1].copy()
        return batch


class ZeroOutsideBrain(AbstractTransform):
    """Set inputs, target and reference to exactly 0 where ``seg`` marks the outside of the brain.

    Preprocessed volumes are 0 outside the brain and so are the inputs at inference; cubic interpolation
    in the spatial transforms and the contrast/gamma transforms leave small non-zero values there, a
    train/test mismatch this removes.
    """

    def __call__(self, **batch):
        outside = batch["seg"] < 0
        for key in ("data", "target", "reference"):
            if key in batch:
                batch[key] = np.where(outside, 0, batch[key]).astype(batch[key].dtype, copy=False)
        return batch


class ToTensors(AbstractTransform):
    """numpy -> torch: ``data`` and ``target`` float32, ``seg`` int8."""

    def __call__(self, **batch):
        batch["data"] = torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32))
        batch["target"] = torch.from_numpy(np.ascontiguousarray(batch["target"], dtype=np.float32))
        batch["seg"] = torch.from_numpy(np.ascontiguousarray(np.rint(batch["seg"]), dtype=np.int8))
        if "reference" in batch:
            batch["reference"] = torch.from_numpy(np.ascontiguousarray(batch["reference"], dtype=np.float32))
        return batch


def spatial_transforms(patch_size: Sequence[int], params: AugmentationParams) -> list[AbstractTransform]:
    """Rotation/scaling (centre crop to ``patch_size``) and mirroring, applied to data (incl. target) and seg."""
    angle = (-params.max_rotation, params.max_rotation)
    transforms: list[AbstractTransform] = [SpatialTransform(
        patch_size, patch_center_dist_from_border=None, do_elastic_deform=False,
        do_rotation=params.p_rotation > 0, angle_x=angle, angle_y=angle, angle_z=angle,
        p_rot_per_sample=params.p_rotation, do_scale=params.p_scale > 0, scale=params.scale,
        p_scale_per_sample=params.p_scale, border_mode_data="constant", border_cval_data=0, order_data=3,
        border_mode_seg="constant", border_cval_seg=SEG_OUTSIDE, order_seg=0, random_crop=False)]
    if params.mirror:
        transforms.append(MirrorTransform(axes=tuple(range(len(patch_size)))))
    return transforms


def intensity_transforms(params: AugmentationParams) -> list[AbstractTransform]:
    """Noise, brightness, contrast, gamma; they act on ``data`` (the inputs) only."""
    return [
        GaussianNoiseTransform(noise_variance=params.noise_variance, p_per_sample=params.p_noise),
        BrightnessMultiplicativeTransform(multiplier_range=params.brightness, per_channel=True,
                                          p_per_sample=params.p_brightness),
        ContrastAugmentationTransform(contrast_range=params.contrast, per_channel=True, p_per_sample=params.p_contrast),
        GammaTransform(gamma_range=params.gamma, invert_image=False, per_channel=True, retain_stats=True,
                       p_per_sample=params.p_gamma),
    ]


def training_transforms(patch_size: Sequence[int], params: AugmentationParams | None = None, spatial: bool = True,
                        intensity: bool = True, reference_channel: int | None = None) -> Compose:
    """The full training pipeline: [spatial] -> split target -> [intensity] -> tensors."""
    params = params or AugmentationParams()
    transforms = spatial_transforms(patch_size, params) if spatial else []
    transforms.append(SplitTarget(reference_channel))
    if intensity:
        transforms += intensity_transforms(params)
    transforms += [ZeroOutsideBrain(), ToTensors()]
    return Compose(transforms)


def validation_transforms(reference_channel: int | None = None) -> Compose:
    """No augmentation: split target, convert to tensors."""
    return Compose([SplitTarget(reference_channel), ToTensors()])
