"""Loss functions and discriminators of the training recipes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from synthunet.training.losses import (ClassifierDiscriminator, PatchDiscriminator, PerceptualLoss, VGG19Features,
                                       enhancement_mask, frequency_loss, gradient_difference_loss, l1_loss,
                                       load_vgg19_features, local_l1, low_frequency_mask, lsgan_discriminator_loss,
                                       lsgan_generator_loss, ssim_loss, tumour_weighted_l1)
from synthunet.training.losses.perceptual import VGGWeightsError


def test_tumour_weighted_l1_matches_seed_000_eq_2_to_4():
    target = torch.zeros(1, 1, 2, 2)
    prediction = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    tumour = torch.tensor([[[[True, True], [False, False]]]])
    # tumour error 1 over 2 voxels = 0.5, healthy error 0 -> 0.5 * 0.5 + 0.5 * 0
    assert tumour_weighted_l1(prediction, target, tumour, 0.5).item() == pytest.approx(0.25)
    assert tumour_weighted_l1(prediction, target, torch.zeros_like(tumour), 0.5).item() == pytest.approx(0.25)
    assert l1_loss(prediction, target).item() == pytest.approx(0.25)


def test_local_loss_mask_is_enhancement_above_delta():
    t1n = torch.tensor([0.5, 0.5, 0.5]).view(1, 1, 3)
    target = torch.tensor([0.55, 0.65, 0.2]).view(1, 1, 3)
    mask = enhancement_mask(target, t1n, 0.1)
    assert mask.flatten().tolist() == [0.0, 1.0, 0.0]
    assert local_l1(torch.zeros_like(target), target, mask).item() == pytest.approx(0.65 / 3)


def test_frequency_loss():
    x = torch.rand(2, 1, 32, 32)
    assert frequency_loss(x, x).item() == 0
    assert frequency_loss(x, x + 0.1).item() > 0
    mask = low_frequency_mask((64, 64), 21)
    assert mask[32, 32] and mask[32, 53] and not mask[32, 54] and not mask[0, 0]
    sphere = low_frequency_mask((48, 48, 48), 21)
    assert sphere[24, 24, 45] and not sphere[24, 45, 45]
    assert frequency_loss(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16)).item() > 0  # high part empty


def test_gdl_and_ssim_loss():
    ramp = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 1, 16, 16, 16) / 16
    assert gradient_difference_loss(ramp, ramp).item() == 0
    assert gradient_difference_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(1 / 256)
    x = torch.rand(1, 1, 16, 16)
    assert ssim_loss(x, x).item() == pytest.approx(0, abs=1e-6)
    assert ssim_loss(x, torch.rand(1, 1, 16, 16)).item() > 0.5


def test_vgg19_layout_matches_torchvision_indices():
    features = VGG19Features()
    convs = [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]
    assert len(features) == 37
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert {2, 7, 14, 21, 28} <= set(convs)
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    assert pools == [4, 9, 18, 27, 36]
    assert features[28].in_channels == 512 and features[2].out_channels == 64


def test_perceptual_loss_with_a_random_weights_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGG19Features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision state dict: classifier ignored
    torch.save(state, tmp_path / "vgg19.pth")
    loss = PerceptualLoss(load_vgg19_features(tmp_path / "vgg19.pth"))
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    assert loss(x.detach(), x.detach()).item() == 0
    value = loss(x, torch.rand(2, 1, 32, 32))
    value.backward()
    assert value.item() > 0 and x.grad is not None
    assert all(not p.requires_grad for p in loss.features.parameters())
    assert loss(torch.rand(1, 1, 3, 32, 32), torch.rand(1, 1, 3, 32, 32)).item() > 0  # 3D: slices along z
    monkeypatch.delenv("SYNTHUNET_VGG19_WEIGHTS", raising=False)
    with pytest.raises(VGGWeightsError, match="never downloads"):
        load_vgg19_features(None)
    with pytest.raises(VGGWeightsError, match="does not exist"):
        load_vgg19_features(tmp_path / "missing.pth")
    torch.save({"0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(VGGWeightsError, match="not a VGG-19"):
        load_vgg19_features(tmp_path / "bad.pth")


@pytest.mark.parametrize("dimension,size", [(2, (32, 32)), (3, (16, 16, 16)), (2, (8, 8))])
def test_discriminators(dimension, size):
    condition, image = torch.rand(2, 3, *size), torch.rand(2, 1, *size)
    patch = PatchDiscriminator(4, dimension, size, base_features=8)
    scores = patch(condition, image)
    assert scores.shape[:2] == (2, 1) and scores.ndim == dimension + 2
    n_sn = sum(1 for m in patch.modules() if hasattr(m, "parametrizations"))
    assert n_sn == 5 if min(size) >= 16 else n_sn >= 3
    assert lsgan_discriminator_loss(torch.ones(3), torch.zeros(3)).item() == 0
    assert lsgan_generator_loss(torch.ones(3)).item() == 0
    classifier = ClassifierDiscriminator(4, dimension, features=(4, 8, 8, 16))
    assert classifier(condition, image).shape == (2, 1)
