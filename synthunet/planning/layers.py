"""The layer list of a planned network, derived analytically from its ``architecture`` block.

The memory model (:mod:`synthunet.planning.memory`) and the time model (:mod:`synthunet.planning.timing`)
both read this list, so they describe exactly the network :mod:`synthunet.architectures` builds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from math import prod
from typing import Sequence


@dataclass(frozen=True)
class Layer:
    """One layer for one sample. ``kind``: conv, transposed_conv, norm, nonlinearity, concat.

    ``saved``: whether autograd keeps this layer's output until the backward pass.
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    saved: bool = True
    has_bias: bool = False

    @property
    def output_elements(self) -> int:
        return self.out_channels * prod(self.out_shape)

    @property
    def parameters(self) -> int:
        if self.kind in ("conv", "transposed_conv"):
            bias = self.out_channels if self.has_bias else 0
            return self.in_channels * self.out_channels * prod(self.kernel_size) + bias
        if self.kind == "norm":
            return 2 * self.out_channels  # affine scale and shift
        return 0

    @property
    def forward_flops(self) -> int:
        """Multiply-adds x 2 of a (transposed) convolution; 0 for the other kinds.

        conv: ``2 k^d Cin Cout`` per output voxel. transposed conv: ``2 k^d Cin Cout`` per *input* voxel
        (every input voxel is spread over a k^d block of outputs).
        """
        if self.kind == "conv":
            return 2 * prod(self.kernel_size) * self.in_channels * self.out_channels * prod(self.out_shape)
        if self.kind == "transposed_conv":
            return 2 * prod(self.kernel_size) * self.in_channels * self.out_channels * prod(self.in_shape)
        return 0


def conv_output_shape(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int]) -> tuple[int, ...]:
    """Output size of a convolution per axis: ``floor((n + 2p - k) / s) + 1``."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(shape, kernel, stride, padding))


def _block(layers: list[Layer], cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int],
           shape: tuple[int, ...]) -> tuple[int, ...]:
    """conv -> norm -> in-place LeakyReLU; the nonlinearity writes into the norm output (no new tensor)."""
    out = conv_output_shape(shape, kernel, stride, [k // 2 for k in kernel])
    layers.append(Layer("conv", cin, cout, tuple(kernel), shape, out))
    layers.append(Layer("norm", cout, cout, (1,) * len(shape), out, out))
    layers.append(Layer("nonlinearity", cout, cout, (1,) * len(shape), out, out, saved=False))
    return out


def _per_stage(value, n: int) -> list[int]:
    return [int(value)] * n if isinstance(value, int) else [int(v) for v in value]


def unet_layers(kwargs: dict, patch_size: Sequence[int], in_channels: int, out_channels: int = 1) -> list[Layer]:
    """Every layer of :class:`synthunet.architectures.unet.PlainUNet` for one sample of ``patch_size``."""
    n_stages = int(kwargs["n_stages"])
    features = _per_stage(kwargs["features_per_stage"], n_stages)
    n_enc = _per_stage(kwargs.get("n_conv_per_stage", 2), n_stages)
    n_dec = _per_stage(kwargs.get("n_conv_per_stage_decoder", 2), n_stages - 1)
    kernels, strides = kwargs["kernel_sizes"], kwargs["strides"]
    dimension = len(patch_size)
    layers: list[Layer] = []
    shape, channels, skip_shapes = tuple(int(p) for p in patch_size), in_channels, []
    for stage in range(n_stages):
        shape = _block(layers, channels, features[stage], kernels[stage], strides[stage], shape)
        for _ in range(n_enc[stage] - 1):
            shape = _block(layers, features[stage], features[stage], kernels[stage], [1] * dimension, shape)
        channels = features[stage]
        skip_shapes.append(shape)
    for stage in range(n_stages - 2, -1, -1):
        stride = tuple(strides[stage + 1])
        up_shape = tuple(n * s for n, s in zip(shape, stride))
        # the transposed-conv output is only read by torch.cat, whose backward needs no saved tensor
        layers.append(Layer("transposed_conv", channels, features[stage], stride, shape, up_shape, saved=False))
        if up_shape != skip_shapes[stage]:
            raise ValueError(f"Patch {tuple(patch_size)} is not divisible by the network's strides")
        layers.append(Layer("concat", 2 * features[stage], 2 * features[stage], (1,) * dimension, up_shape, up_shape))
        shape = _block(layers, 2 * features[stage], features[stage], kernels[stage], [1] * dimension, up_shape)
        for _ in range(n_dec[stage] - 1):
            shape = _block(layers, features[stage], features[stage], kernels[stage], [1] * dimension, shape)
        channels = features[stage]
    layers.append(Layer("conv", channels, out_channels, (1,) * dimension, shape, shape, has_bias=True))
    return layers


def patchgan_layers(spec: dict, patch_size: Sequence[int]) -> list[Layer]:
    """Layers of a PatchGAN discriminator described by ``spec`` (see :func:`patchgan_spec`)."""
    layers: list[Layer] = []
    shape, channels = tuple(int(p) for p in patch_size), int(spec["in_channels"])
    dimension = len(shape)
    # torch.cat of the condition (network input) and the real or synthesised target, read by the first conv
    layers.append(Layer("concat", channels, channels, (1,) * dimension, shape, shape))
    for entry in spec["layers"]:
        kernel = (int(entry["kernel"]),) * dimension
        stride = (int(entry["stride"]),) * dimension
        out = conv_output_shape(shape, kernel, stride, (int(entry["padding"]),) * dimension)
        layers.append(Layer("conv", channels, int(entry["out_channels"]), kernel, shape, out, has_bias=True))
        if entry.get("nonlinearity", True):
            # in-place LeakyReLU(0.2): writes into the conv output, adds no tensor
            layers.append(Layer("nonlinearity", entry["out_channels"], entry["out_channels"], (1,) * dimension, out,
                                out, saved=False))
        shape, channels = out, int(entry["out_channels"])
    return layers


#: first-layer features of the PatchGAN per dimension (as synthunet.training.losses.PatchDiscriminator)
PATCHGAN_BASE_FEATURES = {2: 64, 3: 32}


def patchgan_spec(in_channels: int, patch_size: Sequence[int], max_features: int = 512) -> dict:
    """The conditional PatchGAN of the GAN trainers (seed 000, pix2pix): ``n_down`` (3 unless the patch is
    small) conv 4 / stride 2 layers doubling the features, a conv 3 layer, and a conv 3 layer to one score
    map; spectral normalisation, no other norm. ``in_channels``: network inputs + 1 (the target)."""
    dimension = len(patch_size)
    n_down = max(1, min(3, int(math.log2(max(2, min(patch_size)))) - 1))
    features, layers = PATCHGAN_BASE_FEATURES[dimension], []
    for _ in range(n_down):
        layers.append({"out_channels": features, "kernel": 4, "stride": 2, "padding": 1})
        features = min(2 * features, max_features)
    layers.append({"out_channels": features, "kernel": 3, "stride": 1, "padding": 1})
    layers.append({"out_channels": 1, "kernel": 3, "stride": 1, "padding": 1, "nonlinearity": False})
    return {"name": "patchgan", "in_channels": int(in_channels), "layers": layers}
