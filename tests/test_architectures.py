"""The U-Net built from plans: shapes, gradients, parameter count, registry."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from synthunet.architectures import ARCHITECTURES, build_network, register_architecture
from synthunet.planning.configuration import unet_architecture
from synthunet.planning.layers import unet_layers
from synthunet.planning.memory import count_parameters
from synthunet.planning.timing import forward_flops
from synthunet.planning.topology import plan_topology


def _architecture(spacing, patch, base=4):
    topology = plan_topology(spacing, patch)
    return unet_architecture(topology, base, len(spacing)), topology.patch_size


@pytest.mark.parametrize("spacing, patch, in_channels", [
    ([1.0, 1.0, 1.0], [16, 16, 16], 3),
    ([4.0, 1.0, 1.0], [8, 32, 24], 2),     # anisotropic: kernel 1 / no pooling on z at first
    ([1.0, 1.0], [32, 32], 9),             # 2.5d: 3 slices x 3 sequences
])
def test_network_from_plan_runs_forward_backward(spacing, patch, in_channels):
    architecture, patch = _architecture(spacing, patch)
    network = build_network(architecture, in_channels, dimension=len(spacing))
    x = torch.rand(2, in_channels, *patch)
    y = network(x)
    assert y.shape == (2, 1, *patch)
    y.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())


def test_parameter_count_matches_analytic_model():
    architecture, patch = _architecture([2.0, 2.0, 2.0], [32, 48, 32], base=8)
    network = build_network(architecture, 3, dimension=3)
    layers = unet_layers(architecture["kwargs"], patch, 3)
    assert count_parameters(layers) == sum(p.numel() for p in network.parameters())


@pytest.mark.parametrize("spacing, patch", [([1.0, 1.0, 3.5], [16, 16, 8]), ([1.0, 1.0], [32, 32])])
def test_forward_flops_match_torch_flop_counter(spacing, patch):
    architecture, patch = _architecture(spacing, patch)
    network = build_network(architecture, 2, dimension=len(spacing))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.rand(1, 2, *patch))
    assert forward_flops(unet_layers(architecture["kwargs"], patch, 2)) == counter.get_total_flops()


def test_output_is_linear_and_strides_are_strided_convs():
    architecture, patch = _architecture([1.0, 1.0, 1.0], [16, 16, 16])
    network = build_network(architecture, 1, dimension=3)
    assert isinstance(network.output, torch.nn.Conv3d) and network.output.kernel_size == (1, 1, 1)
    assert network.encoder[1][0][0].stride == (2, 2, 2)
    assert isinstance(network.upsample[0], torch.nn.ConvTranspose3d)


def test_registry():
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_network({"name": "nope", "kwargs": {}}, 1, dimension=3)
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("unet", ARCHITECTURES["unet"])
