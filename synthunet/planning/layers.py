"""The layer list of a planned network, derived analytically from its ``architecture`` block.

The memory model (:mod:`synthunet.planning.memory`) and the time model (:mod:`synthunet.planning.timing`)
both read this list, so they describe exactly the network :mod:`synthunet.architectures` builds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from math import prod
from typing import Sequence

from synthunet.errors import InputError
from synthunet.plans import ArchitecturePlan


@dataclass(frozen=True)
class Layer:
    """One layer for one sample. ``kind``: conv, transposed_conv, norm, nonlinearity, concat, add, upsample;
    also fixed_conv (a depthwise conv with a fixed kernel: FLOPs, no parameters), normalize (norm without
    affine parameters), multiply and pool (neither FLOPs nor parameters).

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
        if self.kind == "fixed_conv":  # depthwise: one input channel per output channel
            return 2 * prod(self.kernel_size) * self.out_channels * prod(self.out_shape)
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


def _shape_after(shape: tuple[int, ...], factor: int, up: bool) -> tuple[int, ...]:
    return tuple(n * factor for n in shape) if up else tuple(n // factor for n in shape)


def dilated_fcn_layers(kwargs: dict, patch_size: Sequence[int], in_channels: int,
                       out_channels: int = 1) -> list[Layer]:
    """Every layer of :class:`synthunet.architectures.dilated_fcn.DilatedFCN` (no pooling: shapes stay)."""
    from synthunet.architectures.dilated_fcn import SEED_FEATURES, SEED_KERNEL_SIZES

    kernels = [int(k) for k in kwargs.get("kernel_sizes", SEED_KERNEL_SIZES)]
    features = [int(f) for f in kwargs.get("features", SEED_FEATURES)]
    shape = tuple(int(p) for p in patch_size)
    ones, layers, channels = (1,) * len(shape), [], in_channels
    for kernel, width in zip(kernels[:-1], features):
        layers.append(Layer("conv", channels, width, (kernel,) * len(shape), shape, shape))
        layers.append(Layer("norm", width, width, ones, shape, shape))
        layers.append(Layer("nonlinearity", width, width, ones, shape, shape, saved=False))
        channels = width
    layers.append(Layer("conv", channels, out_channels, (kernels[-1],) * len(shape), shape, shape, has_bias=True))
    return layers


def unet25d_brasyn_layers(kwargs: dict, patch_size: Sequence[int], in_channels: int,
                          out_channels: int = 1) -> list[Layer]:
    """Every layer of :class:`synthunet.architectures.unet25d_brasyn.UNet25DBraSyn`.

    Mish is not in place: its output is a new tensor, kept when a conv reads it (encoder outputs, the last
    decoder block), not when only torch.cat does (the other decoder blocks)."""
    from synthunet.architectures.unet25d_brasyn import SEED_BASE_FEATURES, brasyn_features

    features = [int(f) for f in kwargs.get("features") or brasyn_features(SEED_BASE_FEATURES)]
    n, dimension = len(features), len(patch_size)
    shape = tuple(int(p) for p in patch_size)
    if any(p % 2 ** n for p in shape):
        raise ValueError(f"Patch {tuple(patch_size)} is not divisible by 2^{n}")
    ones, k3, k2 = (1,) * dimension, (3,) * dimension, (2,) * dimension
    layers: list[Layer] = []
    channels, skip_shapes = in_channels, []
    for i, width in enumerate(features):
        out = _shape_after(shape, 2, up=False)
        layers.append(Layer("conv", channels, width, k3, shape, out))
        if i < n - 1:
            layers.append(Layer("norm", width, width, ones, out, out))
        layers.append(Layer("nonlinearity", width, width, ones, out, out))
        shape, channels = out, width
        skip_shapes.append(shape)
    for i in range(n - 1, -1, -1):
        target = features[i - 1] if i > 0 else features[0]
        out = _shape_after(shape, 2, up=True)
        layers.append(Layer("transposed_conv", channels, target, k2, shape, out))
        layers.append(Layer("norm", target, target, ones, out, out))
        layers.append(Layer("nonlinearity", target, target, ones, out, out, saved=i == 0))
        shape, channels = out, target
        if i > 0:
            layers.append(Layer("concat", 2 * target, 2 * target, ones, out, out))
            channels = 2 * target
    layers.append(Layer("conv", channels, out_channels, k3, shape, shape, has_bias=True))
    layers.append(Layer("nonlinearity", out_channels, out_channels, ones, shape, shape))  # CELU output
    return layers


def _cnr(layers: list[Layer], cin: int, cout: int, shape: tuple[int, ...], stride: int = 1,
         kernel: int = 3) -> tuple[int, ...]:
    d = len(shape)
    return _block(layers, cin, cout, (kernel,) * d, (stride,) * d, shape)


def _resblock(layers: list[Layer], cin: int, cout: int, shape: tuple[int, ...], saved: bool = True) -> None:
    """ResBlock of :mod:`synthunet.architectures.hrfcn`: two CNR layers plus the (1x1 conv) shortcut; the sum
    is a new tensor, kept when a conv reads it (``saved``), not when only torch.cat does."""
    ones = (1,) * len(shape)
    _cnr(layers, cin, cout, shape)
    _cnr(layers, cout, cout, shape)
    if cin != cout:  # read only by the sum, whose backward keeps nothing
        layers.append(Layer("conv", cin, cout, ones, shape, shape, saved=False))
    layers.append(Layer("add", cout, cout, ones, shape, shape, saved=saved))


def _fcn_module(layers: list[Layer], cin: int, cout: int, n_blocks: int, shape: tuple[int, ...],
                saved: bool = True) -> None:
    for i in range(n_blocks):
        _resblock(layers, cin if i == 0 else cout, cout, shape, saved=saved or i < n_blocks - 1)


def _resample(layers: list[Layer], features: Sequence[int], source: int, target: int,
              shape: tuple[int, ...]) -> tuple[int, ...]:
    """Exchange unit between streams (see :func:`synthunet.architectures.hrfcn.resample`)."""
    ones, factor = (1,) * len(shape), 2 ** abs(target - source)
    if target > source:  # 1 or 2 stride-2 CNR layers
        steps = abs(target - source)
        for step in range(steps):
            shape = _cnr(layers, features[source], features[source] if step < steps - 1 else features[target],
                         shape, stride=2)
        return shape
    # 1x1 conv -> norm (read only by nearest upsampling, which keeps nothing) -> upsampling (read by torch.cat)
    layers.append(Layer("conv", features[source], features[target], ones, shape, shape))
    layers.append(Layer("norm", features[target], features[target], ones, shape, shape, saved=False))
    up = _shape_after(shape, factor, up=True)
    layers.append(Layer("upsample", features[target], features[target], ones, shape, up, saved=False))
    return up


def hrfcn_layers(kwargs: dict, patch_size: Sequence[int], in_channels: int, out_channels: int = 1) -> list[Layer]:
    """Every layer of :class:`synthunet.architectures.hrfcn.HRFCN` for one sample of ``patch_size``."""
    from synthunet.architectures.hrfcn import FUSION, SEED_FEATURES, SEED_N_BLOCKS

    w = [int(f) for f in kwargs.get("features", SEED_FEATURES)]
    n_blocks = int(kwargs.get("n_blocks", SEED_N_BLOCKS))
    n_stem = int(kwargs.get("n_stem_blocks") or n_blocks)
    full = tuple(int(p) for p in patch_size)
    if any(p % 4 for p in full):
        raise ValueError(f"Patch {tuple(patch_size)} is not divisible by 4")
    ones = (1,) * len(full)
    shapes = [full, _shape_after(full, 2, False), _shape_after(full, 4, False)]
    layers: list[Layer] = []
    for _ in range(in_channels):  # stem branches, read only by torch.cat
        _fcn_module(layers, 1, w[0], n_stem, full, saved=False)
    stem_width = in_channels * w[0]
    layers.append(Layer("concat", stem_width, stem_width, ones, full, full))
    _cnr(layers, stem_width, w[1], full, stride=2)
    _fcn_module(layers, stem_width, w[0], n_blocks, shapes[0])
    _fcn_module(layers, w[1], w[1], n_blocks, shapes[1])
    _cnr(layers, w[1], w[2], shapes[1], stride=2)
    for stage, plan in FUSION.items():
        for target, sources in plan.items():
            for source in sources:
                if source != target:
                    _resample(layers, w, source, target, shapes[source])
            width = len(sources) * w[target]
            layers.append(Layer("concat", width, width, ones, shapes[target], shapes[target]))
            # the stage-4 full-resolution stream is read only by the final torch.cat
            _fcn_module(layers, width, w[target], n_blocks, shapes[target], saved=not (stage == 4 and target == 0))
    for source in (1, 2):
        _resample(layers, w, source, 0, shapes[source])
    layers.append(Layer("concat", 3 * w[0], 3 * w[0], ones, full, full))
    _resblock(layers, 3 * w[0], w[0], full)
    layers.append(Layer("conv", w[0], out_channels, ones, full, full, has_bias=True))
    return layers


def _dense_block(layers: list[Layer], features: int, growth: int, n_convs: int, shape: tuple[int, ...],
                 saved: bool) -> None:
    """Residual dense block of :mod:`synthunet.architectures.rrdb`: ``n_convs - 1`` x (conv -> in-place LeakyReLU, whose
    result is kept; torch.cat of everything so far, kept for the next conv), conv 5 (read only by the scaling,
    which keeps nothing), then ``0.2 * x5 + x`` (kept when a conv reads it: ``saved``). The scaled temporary
    ``0.2 * x5`` is freed at once and not listed."""
    d, ones = len(shape), (1,) * len(shape)
    k3 = (3,) * d
    for i in range(n_convs - 1):
        cin = features + i * growth
        if i > 0:
            layers.append(Layer("concat", cin, cin, ones, shape, shape))
        layers.append(Layer("conv", cin, growth, k3, shape, shape, has_bias=True))
        layers.append(Layer("nonlinearity", growth, growth, ones, shape, shape, saved=False))
    cin = features + (n_convs - 1) * growth
    layers.append(Layer("concat", cin, cin, ones, shape, shape))
    layers.append(Layer("conv", cin, features, k3, shape, shape, saved=False, has_bias=True))
    layers.append(Layer("add", features, features, ones, shape, shape, saved=saved))


def rrdb_layers(kwargs: dict, patch_size: Sequence[int], in_channels: int, out_channels: int = 1) -> list[Layer]:
    """Every layer of :class:`synthunet.architectures.rrdb.RRDBNet` (no pooling: shapes stay)."""
    from synthunet.architectures.rrdb import DENSE_BLOCKS, DENSE_LAYERS, SEED_FEATURES, SEED_GROWTH, SEED_N_BLOCKS

    features = int(kwargs.get("features", SEED_FEATURES))
    growth = int(kwargs.get("growth", SEED_GROWTH))
    n_blocks = int(kwargs.get("n_blocks", SEED_N_BLOCKS))
    shape = tuple(int(p) for p in patch_size)
    ones, k3 = (1,) * len(shape), (3,) * len(shape)
    # the first conv's output is read by the first dense block's conv and by the long-skip sum
    layers = [Layer("conv", in_channels, features, k3, shape, shape, has_bias=True)]
    for _ in range(n_blocks):
        # the last dense block's sum is read only by the RRDB's scaling; the RRDB's sum by the next conv
        for j in range(DENSE_BLOCKS):
            _dense_block(layers, features, growth, DENSE_LAYERS, shape, saved=j < DENSE_BLOCKS - 1)
        layers.append(Layer("add", features, features, ones, shape, shape))
    layers.append(Layer("conv", features, features, k3, shape, shape, saved=False, has_bias=True))  # body_conv
    layers.append(Layer("add", features, features, ones, shape, shape))  # long skip, read by hr_conv
    layers.append(Layer("conv", features, features, k3, shape, shape, has_bias=True))  # hr_conv (LeakyReLU keeps it)
    layers.append(Layer("nonlinearity", features, features, ones, shape, shape, saved=False))
    layers.append(Layer("conv", features, out_channels, k3, shape, shape, has_bias=True))
    return layers


def _adaptive_norm(layers: list[Layer], channels: int, mask_channels: int, hidden: int,
                   shape: tuple[int, ...]) -> None:
    """AN of :mod:`synthunet.architectures.angan` + in-place LeakyReLU: parameter-free IN (kept by the product),
    shared conv -> ReLU (kept), gamma and beta convs, ``1 + gamma`` (kept), the product (read only by the sum),
    the sum (kept by the LeakyReLU and the next conv)."""
    ones, k3 = (1,) * len(shape), (3,) * len(shape)
    layers.append(Layer("normalize", channels, channels, ones, shape, shape))
    layers.append(Layer("conv", mask_channels, hidden, k3, shape, shape, saved=False, has_bias=True))
    layers.append(Layer("nonlinearity", hidden, hidden, ones, shape, shape))
    layers.append(Layer("conv", hidden, channels, k3, shape, shape, saved=False, has_bias=True))  # gamma
    layers.append(Layer("add", channels, channels, ones, shape, shape))  # 1 + gamma
    layers.append(Layer("conv", hidden, channels, k3, shape, shape, saved=False, has_bias=True))  # beta
    layers.append(Layer("multiply", channels, channels, ones, shape, shape, saved=False))
    layers.append(Layer("add", channels, channels, ones, shape, shape))
    layers.append(Layer("nonlinearity", channels, channels, ones, shape, shape, saved=False))


def angan_layers(kwargs: dict, patch_size: Sequence[int], in_channels: int, out_channels: int = 1) -> list[Layer]:
    """Every layer of :class:`synthunet.architectures.angan.ANGANGenerator` for one sample of ``patch_size``."""
    from synthunet.architectures.angan import MASK_SIGMA, SEED_BASE_FEATURES, SEED_N_RES_BLOCKS, angan_features, \
        gaussian_kernel

    features = [int(f) for f in kwargs.get("features") or angan_features(SEED_BASE_FEATURES)]
    n_down, n_res = len(features) - 1, int(kwargs.get("n_res_blocks", SEED_N_RES_BLOCKS))
    hidden = int(kwargs.get("mask_hidden") or features[0])
    taps = gaussian_kernel(float(kwargs.get("mask_sigma", MASK_SIGMA))).numel()
    full, d = tuple(int(p) for p in patch_size), len(patch_size)
    if any(p % 2 ** n_down for p in full):
        raise ValueError(f"Patch {tuple(patch_size)} is not divisible by 2^{n_down}")
    ones, k3 = (1,) * d, (3,) * d
    layers: list[Layer] = []
    for level in range(n_down):  # the high-frequency masks: (pooled) source minus its separable Gaussian blur
        shape = _shape_after(full, 2 ** level, up=False)
        if level:
            layers.append(Layer("pool", in_channels, in_channels, ones, full, shape, saved=False))
        for axis in range(d):
            kernel = tuple(taps if a == axis else 1 for a in range(d))
            layers.append(Layer("fixed_conv", in_channels, in_channels, kernel, shape, shape, saved=False))
        layers.append(Layer("add", in_channels, in_channels, ones, shape, shape))  # the mask, read by the AN convs
    shape = _block(layers, in_channels, features[0], k3, ones, full)
    for i in range(n_down):
        shape = _block(layers, features[i], features[i + 1], k3, (2,) * d, shape)
    for _ in range(n_res):  # conv-IN-LeakyReLU, conv-IN (read only by the sum), + input
        _block(layers, features[-1], features[-1], k3, ones, shape)
        layers.append(Layer("conv", features[-1], features[-1], k3, shape, shape))
        layers.append(Layer("norm", features[-1], features[-1], ones, shape, shape, saved=False))
        layers.append(Layer("add", features[-1], features[-1], ones, shape, shape))
    for i in range(n_down, 0, -1):
        up = _shape_after(shape, 2, up=True)
        layers.append(Layer("transposed_conv", features[i], features[i - 1], (2,) * d, shape, up))
        _adaptive_norm(layers, features[i - 1], in_channels, hidden, up)
        layers.append(Layer("conv", features[i - 1], features[i - 1], k3, up, up))
        _adaptive_norm(layers, features[i - 1], in_channels, hidden, up)
        shape = up
    layers.append(Layer("conv", features[0], out_channels, k3, shape, shape, has_bias=True))
    return layers


#: architecture name -> analytic layer list (kwargs, patch, in_channels, out_channels)
LAYER_MODELS = {"unet": unet_layers, "hrfcn": hrfcn_layers, "dilated_fcn": dilated_fcn_layers,
                "unet25d_brasyn": unet25d_brasyn_layers, "rrdb": rrdb_layers, "angan": angan_layers}


def architecture_layers(architecture: dict, patch_size: Sequence[int], in_channels: int,
                        out_channels: int = 1) -> list[Layer]:
    """The layer list of any planned architecture (raises for one without an analytic model)."""
    name = architecture.get("name")
    if name not in LAYER_MODELS:
        raise InputError(f"No memory/time model for architecture {name!r}; known: {', '.join(LAYER_MODELS)}")
    return LAYER_MODELS[name](architecture.get("kwargs", {}), patch_size, in_channels, out_channels)


def discriminator_layers(spec: dict, patch_size: Sequence[int]) -> list[Layer]:
    """Layers of the discriminator described by ``spec`` (:func:`patchgan_spec` or :func:`unet_discriminator_spec`)."""
    if spec.get("name") == "unet_discriminator":
        return unet_discriminator_layers(spec, patch_size)
    return patchgan_layers(spec, patch_size)


def patchgan_layers(spec: dict, patch_size: Sequence[int]) -> list[Layer]:
    """Layers of a PatchGAN discriminator described by ``spec`` (see :func:`patchgan_spec`)."""
    layers: list[Layer] = []
    shape, channels = tuple(int(p) for p in patch_size), int(spec["in_channels"])
    dimension = len(shape)
    if spec.get("conditional", True):
        # torch.cat of the condition (network input) and the real or synthesised target, read by the first conv
        layers.append(Layer("concat", channels, channels, (1,) * dimension, shape, shape))
    for entry in spec["layers"]:
        kernel = (int(entry["kernel"]),) * dimension
        stride = (int(entry["stride"]),) * dimension
        out = conv_output_shape(shape, kernel, stride, (int(entry["padding"]),) * dimension)
        layers.append(Layer("conv", channels, int(entry["out_channels"]), kernel, shape, out, has_bias=True))
        if entry.get("norm"):  # instance norm without affine parameters (CycleGAN's PatchGAN)
            layers.append(Layer("normalize", entry["out_channels"], entry["out_channels"], (1,) * dimension, out, out))
        if entry.get("nonlinearity", True):
            # in-place LeakyReLU(0.2): writes into the conv output, adds no tensor
            layers.append(Layer("nonlinearity", entry["out_channels"], entry["out_channels"], (1,) * dimension, out,
                                out, saved=False))
        shape, channels = out, int(entry["out_channels"])
    return layers


#: first-layer features of the PatchGAN per dimension (as synthunet.training.losses.PatchDiscriminator)
PATCHGAN_BASE_FEATURES = {2: 64, 3: 32}


def patchgan_spec(in_channels: int, patch_size: Sequence[int], max_features: int = 512, tail_kernel: int = 3,
                  conditional: bool = True, norm: str = "spectral") -> dict:
    """The conditional PatchGAN of the GAN trainers (seed 000, pix2pix): ``n_down`` (3 unless the patch is
    small) conv 4 / stride 2 layers doubling the features, a conv 3 layer, and a conv 3 layer to one score
    map; spectral normalisation, no other norm. ``in_channels``: network inputs + 1 (the target).
    ``tail_kernel`` 4, ``conditional`` False and ``norm`` "instance": the unconditional 70x70 PatchGAN of the
    unpaired recipe (seed 003, CycleGAN's: instance norm after every conv but the first and the last), as
    :class:`synthunet.training.losses.PatchDiscriminator` builds them."""
    dimension = len(patch_size)
    n_down = _discriminator_n_down(patch_size)
    while tail_kernel == 4 and n_down > 1 and min(patch_size) // 2 ** n_down < 3:
        n_down -= 1  # the two 4x4 stride-1 layers shrink the map by one voxel each
    features, layers = PATCHGAN_BASE_FEATURES[dimension], []
    for _ in range(n_down):
        layers.append({"out_channels": features, "kernel": 4, "stride": 2, "padding": 1})
        features = min(2 * features, max_features)
    layers.append({"out_channels": features, "kernel": tail_kernel, "stride": 1, "padding": 1})
    if norm == "instance":
        for entry in layers[1:]:
            entry["norm"] = True
    layers.append({"out_channels": 1, "kernel": tail_kernel, "stride": 1, "padding": 1, "nonlinearity": False})
    return {"name": "patchgan", "in_channels": int(in_channels), "layers": layers, "conditional": conditional,
            "norm": norm}


def _discriminator_n_down(patch_size: Sequence[int]) -> int:
    """Stride-2 layers of a discriminator: 3 unless the patch is small, then fewer (at least 1)."""
    return max(1, min(3, int(math.log2(max(2, min(patch_size)))) - 1))


#: the discriminators a GAN trainer is planned with (``synth_plan_and_preprocess --gan``)
DISCRIMINATORS = ("patchgan", "realesrgan")
#: the share of the training steps in which the SRGAN recipes run their discriminator: their second stage
#: (``synthunet.training.trainers.super_resolution``: ``adversarial_start_fraction`` 0.7)
REALESRGAN_ADVERSARIAL_STEPS = 0.3


def unet_discriminator_spec(in_channels: int, patch_size: Sequence[int], base_features: int,
                            steps_fraction: float = 1.0) -> dict:
    """Real-ESRGAN's U-Net discriminator, as :class:`synthunet.training.losses.UNetDiscriminator` builds it:
    ``base_features`` wide, ``n_down`` levels as the PatchGAN, unconditional (it scores the image alone).
    ``steps_fraction``: the share of the training steps that run it (the time model charges it in that share
    only)."""
    return {"name": "unet_discriminator", "in_channels": int(in_channels), "base_features": int(base_features),
            "n_down": _discriminator_n_down(patch_size), "conditional": False,
            "steps_fraction": float(steps_fraction)}


def unet_discriminator_layers(spec: dict, patch_size: Sequence[int]) -> list[Layer]:
    """Layers of a U-Net discriminator described by ``spec`` (see :func:`unet_discriminator_spec`). Its
    LeakyReLUs are out of place (each a new tensor), the skips are added after each up level's conv."""
    shape = tuple(int(p) for p in patch_size)
    dimension, features = len(shape), int(spec["base_features"])
    one, three = (1,) * dimension, (3,) * dimension
    layers: list[Layer] = []

    def conv(cin: int, cout: int, kernel: tuple[int, ...], source: tuple[int, ...], out: tuple[int, ...],
             bias: bool = False, activation: bool = True) -> None:
        layers.append(Layer("conv", cin, cout, kernel, source, out, has_bias=bias))
        if activation:
            layers.append(Layer("nonlinearity", cout, cout, one, out, out))

    conv(int(spec["in_channels"]), features, three, shape, shape, bias=True)
    levels = [(shape, features)]
    for _ in range(int(spec["n_down"])):
        source, width = levels[-1]
        out = conv_output_shape(source, (4,) * dimension, (2,) * dimension, one)
        conv(width, 2 * width, (4,) * dimension, source, out)
        levels.append((out, 2 * width))
    current, width = levels.pop()
    while levels:
        skip, skip_width = levels.pop()
        layers.append(Layer("upsample", width, width, one, current, skip))
        conv(width, skip_width, three, skip, skip)
        layers.append(Layer("add", skip_width, skip_width, one, skip, skip))
        current, width = skip, skip_width
    for _ in range(2):
        conv(width, width, three, current, current)
    conv(width, 1, three, current, current, bias=True, activation=False)
    return layers


#: architectures trained as an unpaired cycle (G: A -> B, R: B -> A and two PatchGANs, SynthTrainer_ANGAN)
CYCLE_ARCHITECTURES = ("angan",)


def cycle_spec(architecture: dict, in_channels: int, patch_size: Sequence[int], out_channels: int = 1) -> dict | None:
    """What an unpaired cycle step adds to the generator G (None for other architectures): the reverse
    generator R (the same architecture from the target's ``out_channels`` back to ``in_channels``) and the
    two unconditional, instance-normalised 70x70 PatchGANs, D_B on target slices and D_A on source stacks."""
    if architecture.get("name") not in CYCLE_ARCHITECTURES:
        return None
    return {"reverse": {"architecture": architecture, "in_channels": int(out_channels),
                        "out_channels": int(in_channels)},
            "discriminators": [patchgan_spec(c, patch_size, tail_kernel=4, conditional=False, norm="instance")
                               for c in (out_channels, in_channels)]}


def reverse_layers(cycle: dict, patch_size: Sequence[int]) -> list[Layer]:
    """The layer list of a cycle's reverse generator R (see :func:`cycle_spec`)."""
    reverse = cycle["reverse"]
    return architecture_layers(reverse["architecture"], patch_size, reverse["in_channels"], reverse["out_channels"])


def base_features(architecture: dict) -> int:
    """The width of the first (full-resolution) layer: what the CPU speed model interpolates on."""
    return ArchitecturePlan(str(architecture.get("name", "")), dict(architecture.get("kwargs", {}))).base_features
