"""Networks built from the plans' ``architecture`` block, looked up by name in :data:`ARCHITECTURES`."""
from __future__ import annotations

from typing import Callable, Mapping

from torch import nn

from synthunet.architectures.angan import ANGANGenerator
from synthunet.architectures.baselines import IdentityScale, QuantileMapping, VoxelRegression
from synthunet.architectures.dilated_fcn import DilatedFCN
from synthunet.architectures.hrfcn import HRFCN
from synthunet.architectures.rrdb import RRDBNet
from synthunet.architectures.unet import PlainUNet
from synthunet.architectures.unet25d_brasyn import UNet25DBraSyn
from synthunet.errors import InputError
from synthunet.plans import ArchitecturePlan, as_architecture

#: name -> constructor(dimension, in_channels, out_channels, **kwargs). Register new networks here.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"unet": PlainUNet, "hrfcn": HRFCN, "dilated_fcn": DilatedFCN,
                                                      "unet25d_brasyn": UNet25DBraSyn, "rrdb": RRDBNet,
                                                      "angan": ANGANGenerator,
                                                      "identity_scale": IdentityScale,
                                                      "voxel_regression": VoxelRegression,
                                                      "quantile_mapping": QuantileMapping}


def register_architecture(name: str, constructor: Callable[..., nn.Module]) -> None:
    """Add a network constructor under ``name`` (raises if the name is taken)."""
    if name in ARCHITECTURES:
        raise ValueError(f"Architecture {name!r} is already registered")
    ARCHITECTURES[name] = constructor


def build_network(architecture: ArchitecturePlan | Mapping, in_channels: int, out_channels: int = 1, *,
                  dimension: int) -> nn.Module:
    """Build the network a plans ``architecture`` block describes (``{"name": ..., "kwargs": {...}}``, typed or
    not); its prior, if any, is :func:`synthunet.architectures.model_network.build_synthesis_network`'s."""
    architecture = as_architecture(architecture)
    if architecture.name not in ARCHITECTURES:
        raise InputError(f"Unknown architecture {architecture.name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[architecture.name](dimension=dimension, in_channels=in_channels, out_channels=out_channels,
                                            **architecture.kwargs)


__all__ = ["ANGANGenerator", "ARCHITECTURES", "DilatedFCN", "HRFCN", "PlainUNet", "RRDBNet", "UNet25DBraSyn",
           "build_network", "register_architecture"]
