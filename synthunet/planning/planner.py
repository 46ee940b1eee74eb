"""The experiment planner: a fingerprint and budgets in, the ``configurations`` of plans.json out."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Sequence

import numpy as np

from synthunet.dataset.identifiers import DEFAULT_PLANS
from synthunet.errors import InputError
from synthunet.planning.budget import Budget
from synthunet.planning.configuration import (DEFAULT_ARCHITECTURE, MIN_PATCH_COVERAGE, PRIOR_ARCHITECTURES,
                                              UNPAIRED_PRIORS, PlannedNetwork, architecture_for, plan_network,
                                              planned_prior, short_step_network, short_step_rrdb)
from synthunet.planning.memory import GIB
from synthunet.planning.topology import ANISOTROPY_THRESHOLD, fullres_target_spacing, median_resampled_shape
from synthunet.planning.training_plan import (CPU_INITIAL_LR, CPU_RRDB_INITIAL_LR, step_time_for_min_steps,
                                              training_block)
from synthunet.plans import ResamplingPlan

CONFIGURATIONS = ("3d_fullres", "2.5d", "3d_lowres")
#: CPU 3D plans cut for MIN_CPU_STEPS steps (planning.md, steps before context): architecture -> (cut rule, initial
#: lr). U-Net: depth for the whole image; rrdb: one RRDB and a lower lr (no normalisation); both then shrink the patch
#: until a step fits
SHORT_STEP_RULES = {DEFAULT_ARCHITECTURE: (short_step_network, CPU_INITIAL_LR),
                    "rrdb": (short_step_rrdb, CPU_RRDB_INITIAL_LR)}
DEFAULT_CONFIGURATIONS = CONFIGURATIONS
#: 3d_lowres spacing grows by this factor per step until the patch covers MIN_PATCH_COVERAGE
LOWRES_SPACING_STEP = 1.03
#: 3d_lowres is dropped unless its median image has at least this many times fewer voxels than fullres
LOWRES_MIN_REDUCTION = 2.0


#: written into every configuration: the typed defaults (synthunet/plans.py), with the planner's anisotropy threshold
RESAMPLING = ResamplingPlan(separate_z_anisotropy_threshold=ANISOTROPY_THRESHOLD).to_dict()


def _resampling_block() -> dict:
    return dict(RESAMPLING)


@dataclass(frozen=True)
class DatasetGeometry:
    """Per-case spacings and shapes after cropping, read from the fingerprint."""

    spacings: list[list[float]]
    shapes: list[list[int]]

    @classmethod
    def from_fingerprint(cls, fingerprint: dict) -> "DatasetGeometry":
        spacings, shapes = fingerprint.get("spacings"), fingerprint.get("shapes_after_cropping")
        if not spacings or not shapes or len(spacings) != len(shapes):
            raise InputError("The fingerprint needs per-case 'spacings' and 'shapes_after_cropping' of equal length")
        if any(len(s) != 3 for s in spacings) or any(len(s) != 3 for s in shapes):
            raise InputError("synthUNet plans 3D images: every spacing and shape needs 3 entries (z, y, x)")
        return cls([[float(v) for v in s] for s in spacings], [[int(v) for v in s] for s in shapes])

    @property
    def num_cases(self) -> int:
        return len(self.shapes)

    def median_shape(self, spacing: Sequence[float]) -> list[int]:
        return median_resampled_shape(self.shapes, self.spacings, spacing)


def input_channels(num_channels: int, dimension: int, num_slices: int) -> int:
    """Input channels the estimates assume: every channel but the target (x k slices for 2.5d)."""
    if num_channels < 2:
        raise InputError("Synthesis needs at least two channels (inputs and a target) in dataset.json")
    return (num_channels - 1) * (num_slices if dimension == 2 else 1)


def _estimates(net: PlannedNetwork, in_channels: int, budget: Budget) -> dict:
    evaluation, memory = net.evaluation, net.evaluation.memory
    return {
        "peak_training_memory_gb": round(memory.total / GIB, 3),
        "device_memory_gb": round(evaluation.device_memory_gb, 3),
        "memory_breakdown_gb": {key: round(value / GIB, 4) for key, value in memory.as_dict().items()
                                if key not in ("parameters", "total")},
        "flops_per_step": float(evaluation.flops_per_step),
        "step_time_s": None if evaluation.step_time_s is None else float(f"{evaluation.step_time_s:.3g}"),
        "parameters": memory.parameters,
        "assumed_in_channels": in_channels,
        "assumed_mixed_precision": budget.mixed_precision,
        "patch_coverage": round(net.coverage, 3),
        "fits_budget": evaluation.fits,
    }


def _configuration_block(dimension: int, data_identifier: str, spacing: Sequence[float], median_shape: Sequence[int],
                         net: PlannedNetwork, budget: Budget, in_channels: int, cpu_training_minutes: float,
                         extra: dict | None = None, prior: str = "voxel_regression") -> dict:
    cpu_3d = budget.device == "cpu" and dimension == 3
    short_step_rule = SHORT_STEP_RULES.get(net.architecture["name"]) if cpu_3d else None
    short_step_lr = CPU_INITIAL_LR
    if short_step_rule is not None:
        cut, short_step_lr = short_step_rule
        net = cut(net, spacing, median_shape, in_channels, budget, step_time_for_min_steps(cpu_training_minutes))
    architecture = dict(net.architecture)
    if budget.device == "cpu" and architecture["name"] in PRIOR_ARCHITECTURES:
        # a CPU schedule is minutes long: learn a correction to a closed-form prior (planned_prior)
        # instead of starting from scratch (synthunet/training/prior.py, documentation/planning.md)
        architecture["prior"] = prior
    elif architecture["name"] in UNPAIRED_PRIORS:
        architecture["prior"] = UNPAIRED_PRIORS[architecture["name"]]
    block = {"dimension": dimension, **(extra or {}), "data_identifier": data_identifier,
             "spacing": [round(float(s), 6) for s in spacing], "median_shape": [int(v) for v in median_shape],
             "patch_size": [int(v) for v in net.patch_size], "batch_size": int(net.batch_size),
             "resampling": _resampling_block(), "architecture": architecture,
             "training": training_block(budget.device, net.evaluation.step_time_s, cpu_training_minutes,
                                        short_step_rule is not None, short_step_lr),
             "estimates": _estimates(net, in_channels, budget)}
    return block


def _plan_3d(geometry: DatasetGeometry, spacing: Sequence[float], in_channels: int,
             budget: Budget, architecture: str = DEFAULT_ARCHITECTURE) -> tuple[list[int], PlannedNetwork]:
    median_shape = geometry.median_shape(spacing)
    net = plan_network(spacing, median_shape, geometry.num_cases * prod(median_shape), in_channels, budget,
                       architecture_name=architecture)
    return median_shape, net


def lowres_spacing_and_plan(geometry: DatasetGeometry, fullres_spacing: Sequence[float], in_channels: int,
                            budget: Budget) -> tuple[list[float], list[int], PlannedNetwork] | None:
    """Coarsen the spacing (3 % per step; only the finer axes while some axis is > 2x coarser) until the
    patch covers MIN_PATCH_COVERAGE of the median image. None when the result would not be at least
    LOWRES_MIN_REDUCTION times smaller than full resolution."""
    fullres_voxels = prod(geometry.median_shape(fullres_spacing))
    spacing = np.asarray(fullres_spacing, dtype=float)
    for _ in range(200):
        ratio = spacing.max() / spacing
        if np.any(ratio > 2):
            spacing[ratio > 2] *= LOWRES_SPACING_STEP
        else:
            spacing *= LOWRES_SPACING_STEP
        median_shape, net = _plan_3d(geometry, spacing, in_channels, budget)
        if net.coverage >= MIN_PATCH_COVERAGE:
            break
    if fullres_voxels / prod(median_shape) < LOWRES_MIN_REDUCTION:
        return None
    return [float(s) for s in spacing], median_shape, net


def spacing_2p5d(fullres_spacing: Sequence[float]) -> list[float]:
    """2.5d data spacing: fullres' unless anisotropic (> ANISOTROPY_THRESHOLD), then isotropic at the
    median of the three fullres spacings (the in-plane spacing when one axis is coarse)."""
    if max(fullres_spacing) / min(fullres_spacing) > ANISOTROPY_THRESHOLD:
        return [float(np.median(fullres_spacing))] * 3
    return [float(s) for s in fullres_spacing]


def plan_configurations(fingerprint: dict, budget: Budget, configurations: Sequence[str] = DEFAULT_CONFIGURATIONS,
                        num_slices: int = 3, cpu_training_minutes: float = 10.0,
                        data_identifier_prefix: str = DEFAULT_PLANS,
                        shared_identifiers: dict[str, tuple[list[float], str]] | None = None,
                        architecture: str = DEFAULT_ARCHITECTURE) -> dict:
    """The ``configurations`` block for ``budget``.

    ``architecture``: the network of the 3D configurations (unet, hrfcn, dilated_fcn) or of 2.5d
    (unet, unet25d_brasyn); configurations it does not apply to get the U-Net. Which configurations exist
    and their spacings are decided with the U-Net whatever the architecture, so every architecture's plans
    read the same preprocessed data.
    3d_lowres is added (when asked for) only if the fullres patch covers < 25 % of the median image.
    ``shared_identifiers``: configuration -> (spacing, data_identifier) of another plans file; a
    configuration with the same spacing reuses that identifier, so both plans read the same data.
    """
    unknown = [c for c in configurations if c not in CONFIGURATIONS]
    if unknown:
        raise InputError(f"Unknown configuration(s) {unknown}; known: {', '.join(CONFIGURATIONS)}")
    if num_slices < 1 or num_slices % 2 == 0:
        raise InputError(f"num_slices must be odd and >= 1 (a central slice with neighbours), got {num_slices}")
    geometry = DatasetGeometry.from_fingerprint(fingerprint)
    num_channels = len(fingerprint["channel_names"])
    prior = planned_prior(fingerprint["channel_names"].values())
    shared = shared_identifiers or {}

    def identifier(name: str, spacing: Sequence[float]) -> str:
        if name in shared and np.allclose(shared[name][0], spacing):
            return shared[name][1]
        return f"{data_identifier_prefix}_{name}"

    plans: dict[str, dict] = {}
    fullres_spacing = fullres_target_spacing(geometry.spacings, geometry.shapes)
    in_3d = input_channels(num_channels, 3, num_slices)
    fullres_id = identifier("3d_fullres", fullres_spacing)
    fullres_shape, fullres_net, geometry_net = None, None, None
    arch_3d, arch_2d = architecture_for(architecture, 3), architecture_for(architecture, 2)
    if "3d_fullres" in configurations or "3d_lowres" in configurations:
        fullres_shape, fullres_net = _plan_3d(geometry, fullres_spacing, in_3d, budget, arch_3d)
        geometry_net = fullres_net
        if arch_3d != DEFAULT_ARCHITECTURE and "3d_lowres" in configurations:
            geometry_net = _plan_3d(geometry, fullres_spacing, in_3d, budget)[1]
    if "3d_fullres" in configurations:
        plans["3d_fullres"] = _configuration_block(3, fullres_id, fullres_spacing, fullres_shape, fullres_net, budget,
                                                   in_3d, cpu_training_minutes, prior=prior)
    if "2.5d" in configurations:
        spacing = spacing_2p5d(fullres_spacing)
        same_data = np.allclose(spacing, fullres_spacing)
        median_shape = geometry.median_shape(spacing)
        side = max(median_shape)
        in_2d = input_channels(num_channels, 2, num_slices)
        net = plan_network([min(spacing)] * 2, [side, side], geometry.num_cases * prod(median_shape), in_2d, budget,
                           square=True, architecture_name=arch_2d)
        data_id = fullres_id if same_data else identifier("2.5d", spacing)
        plans["2.5d"] = _configuration_block(2, data_id, spacing, median_shape, net, budget, in_2d,
                                             cpu_training_minutes,
                                             extra={"num_slices": num_slices, "slicing_axes": [0, 1, 2]}, prior=prior)
    if "3d_lowres" in configurations and geometry_net.coverage < MIN_PATCH_COVERAGE:
        lowres = lowres_spacing_and_plan(geometry, fullres_spacing, in_3d, budget)
        if lowres is not None:
            spacing, median_shape, net = lowres
            if arch_3d != DEFAULT_ARCHITECTURE:
                median_shape, net = _plan_3d(geometry, spacing, in_3d, budget, arch_3d)
            plans["3d_lowres"] = _configuration_block(3, identifier("3d_lowres", spacing), spacing, median_shape, net,
                                                      budget, in_3d, cpu_training_minutes, prior=prior)
    return plans


class UnknownPlannerError(InputError):
    """``-pl NAME`` names no registered planner."""


class DefaultPlanner:
    """synthUNet's experiment planner (``-pl DefaultPlanner``, the default): :func:`plan_configurations`.

    The planner is chosen by name, as nnU-Net's ``-pl`` chooses its ExperimentPlanner class. To plan
    differently, subclass, override :meth:`plan_configurations` (e.g. call ``super()`` and change a block),
    decorate the class with :func:`register_planner` and pass its class name to ``-pl``. The plans record a
    planner other than the default in ``planned_for.planner``.
    """

    def plan_configurations(self, fingerprint: dict, budget: Budget,
                            configurations: Sequence[str] = DEFAULT_CONFIGURATIONS, num_slices: int = 3,
                            cpu_training_minutes: float = 10.0, data_identifier_prefix: str = DEFAULT_PLANS,
                            shared_identifiers: dict[str, tuple[list[float], str]] | None = None,
                            architecture: str = DEFAULT_ARCHITECTURE) -> dict:
        """The ``configurations`` block of the plans (see :func:`plan_configurations`)."""
        return plan_configurations(fingerprint, budget, configurations, num_slices, cpu_training_minutes,
                                   data_identifier_prefix, shared_identifiers, architecture)


#: planner name (its class name) -> class; -pl chooses from these
PLANNERS: dict[str, type[DefaultPlanner]] = {}
DEFAULT_PLANNER = DefaultPlanner.__name__


def register_planner(cls: type[DefaultPlanner]) -> type[DefaultPlanner]:
    """Make ``cls`` selectable with ``-pl {cls.__name__}`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, DefaultPlanner)):
        raise TypeError(f"a planner must subclass DefaultPlanner, got {cls!r}")
    PLANNERS[cls.__name__] = cls
    return cls


register_planner(DefaultPlanner)


def get_planner(name: str | type[DefaultPlanner] | DefaultPlanner = DEFAULT_PLANNER) -> DefaultPlanner:
    """An instance of the planner registered as ``name`` (a class or an instance is used as is)."""
    if isinstance(name, DefaultPlanner):
        return name
    if isinstance(name, type) and issubclass(name, DefaultPlanner):
        return name()
    if name not in PLANNERS:
        raise UnknownPlannerError(f"Unknown planner {name!r}; known planners: {', '.join(sorted(PLANNERS))}",
                                  hint="choose one with -pl, or register a DefaultPlanner subclass with "
                                       "synthunet.planning.planner.register_planner; the plans name is -p")
    return PLANNERS[name]()
