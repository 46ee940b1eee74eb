"""The seed architectures (hrfcn, dilated_fcn, unet25d_brasyn, rrdb) built from plans: forward/backward on CPU,
output shape = target shape, analytic layer list = the module (parameters, FLOPs), plans selection."""
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from synthunet.architectures import build_network
from synthunet.architectures.model_network import ResidualOutput, build_synthesis_network
from synthunet.planning import plans_for_fingerprint
from synthunet.planning.cli import build_parser, plans_name_from_args
from synthunet.planning.configuration import ARCHITECTURE_DIMENSIONS, architecture_topology, build_architecture
from synthunet.planning.layers import architecture_layers, base_features
from synthunet.planning.memory import count_parameters
from synthunet.planning.timing import CpuSpeed, forward_flops

FINGERPRINT = {"dataset_name": "Dataset999_Test", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
               "label_values": [], "spacings": [[2.0, 2.0, 2.0]] * 10,
               "shapes_after_cropping": [[60 + i % 3, 70, 62] for i in range(10)]}
#: architecture -> (configuration it replaces the U-Net in, a tiny patch, input channels)
TINY = {"hrfcn": ("3d_fullres", [8, 12, 8], 3), "dilated_fcn": ("3d_fullres", [7, 9, 6], 3),
        "unet25d_brasyn": ("2.5d", [16, 16], 9), "rrdb": ("3d_fullres", [7, 9, 6], 3)}


def _tiny_architecture(name, patch, base=4):
    dimension = len(patch)
    topology = architecture_topology(name, [1.0] * dimension, patch)
    return build_architecture(name, topology, base, dimension), topology.patch_size


def assert_trains_and_matches_layer_model(network, architecture: dict, x: torch.Tensor, y: torch.Tensor,
                                          patch, in_channels: int) -> None:
    """Output shape = target shape, finite gradients everywhere, and the planner's layer model counts the
    network's parameters and forward FLOPs exactly (torch's FLOP counter)."""
    out = network(x)
    assert out.shape == y.shape
    torch.nn.functional.l1_loss(out, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    layers = architecture_layers(architecture, patch, in_channels)
    assert count_parameters(layers) == sum(p.numel() for p in network.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(x[:1])
    assert forward_flops(layers) == counter.get_total_flops()


@pytest.mark.parametrize("name", sorted(TINY))
def test_builds_from_plan_and_trains_on_tiny_patch(name):
    configuration, patch, in_channels = TINY[name]
    architecture, patch = _tiny_architecture(name, patch)
    network = build_network(architecture, in_channels, 1, dimension=len(patch))
    x, y = torch.rand(2, in_channels, *patch), torch.rand(2, 1, *patch)
    assert_trains_and_matches_layer_model(network, architecture, x, y, patch, in_channels)


@pytest.mark.parametrize("name", sorted(TINY))
def test_planner_sizes_each_architecture(name):
    configuration = TINY[name][0]
    for device in ("cpu", "cuda"):
        plans = plans_for_fingerprint(FINGERPRINT, device=device, configurations=["3d_fullres", "2.5d"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), architecture=name, plans_name=f"P_{name}")
        blocks = plans["configurations"]
        assert blocks[configuration]["architecture"]["name"] == name
        other = "2.5d" if configuration == "3d_fullres" else "3d_fullres"
        # rrdb replaces the U-Net of every configuration, the others that of one dimension
        applies = (2 if other == "2.5d" else 3) in ARCHITECTURE_DIMENSIONS[name]
        assert blocks[other]["architecture"]["name"] == (name if applies else "unet")
        # the same preprocessed data as the default plans
        assert {b["data_identifier"] for b in blocks.values()} == {"synthUNetPlans_3d_fullres"}
        block = blocks[configuration]
        assert block["estimates"]["fits_budget"]
        patch = block["patch_size"]
        network = build_network(block["architecture"], block["estimates"]["assumed_in_channels"], 1,
                                dimension=block["dimension"])
        assert block["estimates"]["parameters"] == sum(p.numel() for p in network.parameters())
        if name == "hrfcn":
            assert all(p % 4 == 0 for p in patch)
        if name == "unet25d_brasyn":
            assert all(p % 2 ** len(block["architecture"]["kwargs"]["features"]) == 0 for p in patch)
        if device == "cpu":
            assert block["estimates"]["step_time_s"] <= 1.0


@pytest.mark.parametrize("name", ["hrfcn", "dilated_fcn", "rrdb"])
def test_width_scales_with_budget(name):
    widths = []
    for device in ("cpu", "cuda"):
        plans = plans_for_fingerprint(FINGERPRINT, device=device, configurations=["3d_fullres"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), step_time_budget_s=0.3, architecture=name)
        widths.append(base_features(plans["configurations"]["3d_fullres"]["architecture"]))
    assert widths[0] < widths[1]


def test_cli_plans_name_defaults_per_architecture():
    parser = build_parser()
    assert plans_name_from_args(parser.parse_args(["-d", "1"])) == "synthUNetPlans"
    assert plans_name_from_args(parser.parse_args(["-d", "1", "--architecture", "hrfcn"])) == "synthUNetPlans_hrfcn"
    assert plans_name_from_args(parser.parse_args(["-d", "1", "--architecture", "hrfcn", "-p", "Mine"])) == "Mine"


def test_dilated_fcn_long_residual_reuses_trainer_option():
    architecture, patch = _tiny_architecture("dilated_fcn", [6, 6, 6])
    config = {"architecture": architecture, "dimension": 3}
    network = build_synthesis_network(config, ["T1N", "T2W"], residual_input="T2W")
    assert isinstance(network, ResidualOutput) and network.channel == 1
    torch.nn.init.zeros_(network.network.output.weight)
    torch.nn.init.zeros_(network.network.output.bias)
    x = torch.rand(1, 2, *patch)
    assert torch.allclose(network(x), x[:, 1:2])


def test_seed_details():
    from synthunet.architectures.dilated_fcn import DilatedFCN
    from synthunet.architectures.unet25d_brasyn import UNet25DBraSyn

    fcn = DilatedFCN(3, 1, 1)  # the seed's generator: 1 input
    convs = [m for m in fcn.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [c.kernel_size[0] for c in convs] == [9, 3, 3, 3, 9, 3, 3, 7, 3]
    assert [c.dilation[0] for c in convs] == [1, 2, 2, 2, 2, 2, 2, 2, 1]
    assert [c.out_channels for c in convs] == [32, 32, 32, 64, 64, 64, 32, 32, 1]
    # the seed's Keras table: 3,638,592 trainable (no conv bias); here + 1 output bias
    assert sum(p.numel() for p in fcn.parameters()) == 3_638_592 + 1
    brasyn = UNet25DBraSyn(2, 9, 1)
    strided = [m for m in brasyn.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(strided) == 8 and all(c.stride == (2, 2) and c.kernel_size == (3, 3) for c in strided)
    assert isinstance(brasyn.output_activation, torch.nn.CELU)
    assert any(isinstance(m, torch.nn.Mish) for m in brasyn.modules())
    assert brasyn(torch.rand(1, 9, 256, 256)).shape == (1, 1, 256, 256)


def test_parameter_counts_at_paper_widths():
    """Printed for documentation/architectures.md."""
    from synthunet.architectures.hrfcn import HRFCN
    from synthunet.architectures.dilated_fcn import DilatedFCN
    from synthunet.architectures.rrdb import RRDBNet
    from synthunet.architectures.unet25d_brasyn import UNet25DBraSyn

    counts = {"hrfcn (64/128/256, 3 inputs, 4 ResBlocks)": HRFCN(3, 3, 1),
              "dilated_fcn (seed widths, 1 input)": DilatedFCN(3, 1, 1),
              "unet25d_brasyn (64..512, 9 input channels)": UNet25DBraSyn(2, 9, 1),
              "rrdb (ESRGAN: 64/32, 23 RRDBs, 2D, 1 input)": RRDBNet(2, 1, 1),
              "rrdb (64/32, 4 RRDBs, 3D, 1 input)": RRDBNet(3, 1, 1, n_blocks=4)}
    for name, network in counts.items():
        print(f"{name}: {sum(p.numel() for p in network.parameters()):,}")
    assert np.all([sum(p.numel() for p in n.parameters()) > 0 for n in counts.values()])
