"""Explicit model of the peak memory of one training step (see documentation/planning.md).

peak = B * (saved activations + backward transient) * bytes_per_activation      # autograd graph
     + B * (C_in + C_out) * V * 4                                                # the batch itself
     + 16 * P  (fp32 weights, gradients, AdamW exp_avg and exp_avg_sq)            # (+2 P with AMP)
     + the same terms for a PatchGAN discriminator when a GAN trainer is planned
     (an unpaired cycle architecture, angan: G and the reverse generator R twice each, both batches, R's
      parameters, and the two frozen PatchGANs of the generators' update, see estimate_training_memory)
The framework's own footprint (CUDA context, Python + torch libraries) is *not* in ``peak``; the
planner adds a fixed overhead when comparing with the budget.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import prod
from typing import Sequence

from synthunet.planning.layers import (Layer, architecture_layers, discriminator_layers, patchgan_layers,
                                       reverse_layers)

GIB = 1024 ** 3
#: gradient buffers alive at the start of the backward pass, in units of the largest saved tensor
BACKWARD_TRANSIENT_FACTOR = 2.0
#: bytes per parameter: fp32 weight + gradient + AdamW's two moments
BYTES_PER_PARAMETER = 16


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak training memory of one step, in bytes, with its parts."""

    activations: int
    backward_transient: int
    batch: int
    parameters_and_optimizer: int
    discriminator: int
    parameters: int

    @property
    def total(self) -> int:
        return (self.activations + self.backward_transient + self.batch + self.parameters_and_optimizer
                + self.discriminator)

    @property
    def total_gb(self) -> float:
        return self.total / GIB

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def saved_elements(layers: Sequence[Layer]) -> int:
    """Elements autograd keeps for the backward pass (one sample)."""
    return sum(layer.output_elements for layer in layers if layer.saved)


def transient_elements(layers: Sequence[Layer]) -> int:
    """Gradient buffers alive together at the start of the backward pass (one sample)."""
    return int(BACKWARD_TRANSIENT_FACTOR * max(layer.output_elements for layer in layers))


def count_parameters(layers: Sequence[Layer]) -> int:
    """Trainable parameters of a layer list."""
    return sum(layer.parameters for layer in layers)


def _graph_bytes(layers: Sequence[Layer], batch_size: int, bytes_per_activation: int) -> tuple[int, int]:
    return (batch_size * saved_elements(layers) * bytes_per_activation,
            batch_size * transient_elements(layers) * bytes_per_activation)


def estimate_training_memory(architecture: dict, patch_size: Sequence[int], batch_size: int, in_channels: int,
                             out_channels: int = 1, mixed_precision: bool = False,
                             discriminator: dict | None = None, cycle: dict | None = None) -> MemoryEstimate:
    """Peak memory of one forward + backward + AdamW step of the planned network.

    ``discriminator``: a spec from :func:`synthunet.planning.layers.patchgan_spec` or ``unet_discriminator_spec``;
    its activations are counted for a batch of 2 B (real and synthesised targets), plus its parameters and optimiser.
    ``cycle``: a spec from :func:`synthunet.planning.layers.cycle_spec` (unpaired recipe). The generators'
    update is the peak: G and R each run twice (translation, reconstruction), their graphs are kept together
    with those of both discriminators (batch B each, frozen), and the batch holds source and target patches.
    The discriminators' own update (2 B each, one at a time) comes after the generators' graphs are freed.
    """
    bytes_per_activation = 2 if mixed_precision else 4
    layers = architecture_layers(architecture, patch_size, in_channels, out_channels)
    activations, transient = _graph_bytes(layers, batch_size, bytes_per_activation)
    parameters = count_parameters(layers)
    per_parameter = BYTES_PER_PARAMETER + (2 if mixed_precision else 0)  # autocast keeps fp16 weight copies
    weights = per_parameter * parameters
    batch = batch_size * (in_channels + out_channels) * prod(patch_size) * 4
    disc_bytes = 0
    if discriminator is not None:
        disc_layers = discriminator_layers(discriminator, patch_size)
        disc_act, disc_transient = _graph_bytes(disc_layers, batch_size, bytes_per_activation)
        # the discriminator step sees real and synthesised targets in one batch of 2 B while the generator's
        # graph is kept for its own update; spectral norm keeps a normalised copy of every weight (+4 bytes)
        disc_bytes = 2 * (disc_act + disc_transient) + (per_parameter + 4) * count_parameters(disc_layers)
    if cycle is not None:
        reverse = reverse_layers(cycle, patch_size)
        reverse_act, reverse_transient = _graph_bytes(reverse, batch_size, bytes_per_activation)
        activations, transient = 2 * (activations + reverse_act), max(transient, reverse_transient)
        weights += per_parameter * count_parameters(reverse)
        batch *= 2
        for spec in cycle["discriminators"]:
            disc_layers = patchgan_layers(spec, patch_size)
            disc_act, disc_transient = _graph_bytes(disc_layers, batch_size, bytes_per_activation)
            spectral_copy = 4 if spec.get("norm", "spectral") == "spectral" else 0
            disc_bytes += disc_act + disc_transient + (per_parameter + spectral_copy) * count_parameters(disc_layers)
    return MemoryEstimate(activations=activations, backward_transient=transient, batch=batch,
                          parameters_and_optimizer=weights, discriminator=disc_bytes,
                          parameters=parameters)
