"""Planning one configuration: width, topology, patch and batch size under a :class:`Budget`."""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import Iterable, Sequence

from synthunet.dataset.super_resolution import LOW_RESOLUTION_SUFFIX
from synthunet.errors import InputError
from synthunet.planning.budget import Budget, Evaluation, evaluate
from synthunet.planning.topology import Topology, features_per_stage, initial_patch_size, plan_topology

MIN_BATCH_SIZE = 2
#: a batch covers at most this fraction of the dataset's voxels (nnU-Net: 5 %)
MAX_DATASET_FRACTION = 0.05
#: width is reduced before the patch falls below this fraction of the median image (also the 3d_lowres trigger)
MIN_PATCH_COVERAGE = 0.25
#: starting patch at most this many voxels (nnU-Net: 256^3 in 3D, 2048^2 in 2D)
VOXEL_BUDGET = {3: 256 ** 3, 2: 2048 ** 2}
#: feature cap at base 32 (nnU-Net: 320 in 3D, 512 in 2D); scaled with the base width
MAX_FEATURES = {3: 320, 2: 512}
GPU_BASE_FEATURES = (32,)
CPU_BASE_FEATURES = (32, 16, 8)
#: no patch edge is shrunk below this (or below the median shape when that is smaller)
MIN_PATCH_EDGE = 8
N_CONV_PER_STAGE = 2
MAX_BATCH_SIZE = 512


@dataclass(frozen=True)
class PlannedNetwork:
    """The outcome of planning one configuration."""

    architecture: dict
    topology: Topology
    patch_size: list[int]
    batch_size: int
    base_features: int
    coverage: float
    evaluation: Evaluation


def unet_architecture(topology: Topology, base_features: int, dimension: int) -> dict:
    """The plans' ``architecture`` block of a plain U-Net for a topology and a base width."""
    max_features = MAX_FEATURES[dimension] * base_features // 32
    return {"name": "unet", "kwargs": {
        "n_stages": topology.n_stages,
        "features_per_stage": features_per_stage(topology.n_stages, base_features, max_features),
        "kernel_sizes": topology.kernel_sizes, "strides": topology.strides,
        "n_conv_per_stage": N_CONV_PER_STAGE, "n_conv_per_stage_decoder": N_CONV_PER_STAGE,
        "norm": "instance", "nonlinearity": "leaky_relu"}}


#: architectures the planner can size, and the configurations (dimensions) they apply to
ARCHITECTURE_DIMENSIONS = {"unet": (2, 3), "hrfcn": (3,), "dilated_fcn": (3,), "unet25d_brasyn": (2,),
                           "rrdb": (2, 3), "angan": (2,)}
PLANNED_ARCHITECTURES = tuple(ARCHITECTURE_DIMENSIONS)
DEFAULT_ARCHITECTURE = "unet"
#: widths tried per architecture (first that fits with enough coverage wins); hrfcn and unet25d_brasyn start
#: at their papers' widths on GPU (64 at full resolution), dilated_fcn's paper width is 32
ARCHITECTURE_BASES = {"cpu": {"hrfcn": (32, 16, 8), "dilated_fcn": (32, 16, 8), "unet25d_brasyn": (32, 16, 8),
                              "rrdb": (32, 16, 8), "angan": (32, 16, 8)},
                      "cuda": {"hrfcn": (64, 32, 16), "dilated_fcn": (32, 16, 8), "unet25d_brasyn": (64, 32, 16),
                               "rrdb": (64, 32, 16), "angan": (64, 32, 16)}}
#: unet25d_brasyn: at most this many stride-2 stages (the seed's 8 for a 256^2 patch)
BRASYN_MAX_DOWN = 8
#: angan: at most this many stride-2 levels (the seed's decoder has three deconvolutions), pooled down to 4 voxels
ANGAN_MAX_DOWN = 3
#: hrfcn's streams run at 1/2 and 1/4 resolution
HRFCN_POOLS = 2
#: rrdb: RRDBs per dimension (ESRGAN's 23 in 2D; a 3D RRDB costs ~3x the FLOPs per voxel of a 2D one, and the
#: whole network runs at full resolution, so 3D plans use fewer); growth = features / 2 (ESRGAN: 64 / 32)
RRDB_BLOCKS = {2: 23, 3: 4}
#: CPU 3D rrdb plans: steps before depth (short_step_rrdb): one RRDB, receptive field 39 voxels instead of 129
CPU_RRDB_BLOCKS_3D = 1
#: ...and no residual scaling: ESRGAN's 0.2 per dense block and per RRDB steadies 23 stacked RRDBs, but in one RRDB
#: it only divides the dense branch's share of every update by 25 (0.2 x 0.2); unscaled, the same steps learn ~2.5x
#: more (documentation/planning.md)
CPU_RRDB_RESIDUAL_SCALE_3D = 1.0
#: architectures whose CPU plans (3D, and 2.5D with a 2D prior on the central slices) learn a correction to the
#: voxel-regression prior (see documentation/planning.md); angan is unpaired, so no regression can be fitted for it
#: (it gets UNPAIRED_PRIORS instead)
PRIOR_ARCHITECTURES = ("unet", "rrdb", "hrfcn", "dilated_fcn", "unet25d_brasyn")
#: unpaired architectures and the prior their plans get on every device: tissue matching fitted without pairs
#: (histogram matching, or a map that reorders the tissues where the edges say so). It fixes which of the equally
#: cycle-consistent mappings training starts from, where from scratch the tissue order came out inverted in 1-2 of
#: 3 seeds, and unlike histogram matching it can start T2W from T2F with bright CSF (documentation/unpaired.md)
UNPAIRED_PRIORS = {"angan": "tissue_matched_input"}


def planned_prior(channel_names: Iterable[str]) -> str:
    """The prior CPU plans give: ``matched_input`` (the most correlated input, histogram-matched) for a super-resolution
    dataset, i.e. one with a channel ``X`` and its low-resolution copy ``X_LR`` (synth_make_sr_dataset's names),
    whose natural prior is the interpolated input itself; else ``voxel_regression``."""
    names = {str(n) for n in channel_names}
    return "matched_input" if any(f"{n}{LOW_RESOLUTION_SUFFIX}" in names for n in names) else "voxel_regression"


def architecture_for(name: str, dimension: int) -> str:
    """The architecture a configuration of ``dimension`` gets when ``name`` was asked for: ``name`` when it
    applies to that dimension, else the U-Net (hrfcn/dilated_fcn are 3D, unet25d_brasyn is 2D)."""
    if name not in ARCHITECTURE_DIMENSIONS:
        raise InputError(f"Unknown architecture {name!r}; the planner knows {', '.join(PLANNED_ARCHITECTURES)}")
    return name if dimension in ARCHITECTURE_DIMENSIONS[name] else DEFAULT_ARCHITECTURE


def architecture_topology(name: str, spacing: Sequence[float], patch: Sequence[int]) -> Topology:
    """The patch constraint of an architecture, as a :class:`Topology` (only ``divisor``/``patch_size`` matter
    for the non-U-Net ones): U-Net: nnU-Net's topology; hrfcn: divisible by 4; dilated_fcn: any patch;
    unet25d_brasyn: pooled down to 1 voxel, at most BRASYN_MAX_DOWN times (divisible by 2^n_down); rrdb: any patch."""
    dimension = len(spacing)
    if name == "unet":
        return plan_topology(spacing, patch)
    if name == "unet25d_brasyn":
        return plan_topology([1.0] * dimension, patch, min_feature_map_size=1, max_stages=BRASYN_MAX_DOWN + 1)
    if name == "angan":  # divisible by 2^n_down
        return plan_topology([1.0] * dimension, patch, max_stages=ANGAN_MAX_DOWN + 1)
    pools = [HRFCN_POOLS] * dimension if name == "hrfcn" else [0] * dimension
    padded = [int(-(-int(p) // 2 ** n) * 2 ** n) for p, n in zip(patch, pools)]
    return Topology(kernel_sizes=[], strides=[], pools_per_axis=pools, patch_size=padded)


def build_architecture(name: str, topology: Topology, base_features: int, dimension: int) -> dict:
    """The plans' ``architecture`` block of architecture ``name`` at width ``base_features``."""
    if name == "unet":
        return unet_architecture(topology, base_features, dimension)
    if name == "hrfcn":
        from synthunet.architectures.hrfcn import SEED_N_BLOCKS
        return {"name": "hrfcn", "kwargs": {"features": [base_features, 2 * base_features, 4 * base_features],
                                            "n_blocks": SEED_N_BLOCKS, "n_stem_blocks": SEED_N_BLOCKS}}
    if name == "dilated_fcn":
        from synthunet.architectures.dilated_fcn import (SEED_BASE_FEATURES, SEED_FEATURES, SEED_KERNEL_SIZES,
                                                         seed_dilations)
        features = [max(1, f * base_features // SEED_BASE_FEATURES) for f in SEED_FEATURES]
        return {"name": "dilated_fcn", "kwargs": {"features": features, "kernel_sizes": list(SEED_KERNEL_SIZES),
                                                  "dilations": seed_dilations(len(SEED_KERNEL_SIZES)),
                                                  "norm": "instance", "nonlinearity": "leaky_relu"}}
    if name == "unet25d_brasyn":
        from synthunet.architectures.unet25d_brasyn import brasyn_features
        n_down = min(topology.pools_per_axis)
        return {"name": "unet25d_brasyn", "kwargs": {"features": brasyn_features(base_features, n_down)}}
    if name == "angan":
        from synthunet.architectures.angan import MASK_SIGMA, SEED_N_RES_BLOCKS, angan_features
        return {"name": "angan", "kwargs": {"features": angan_features(base_features, min(topology.pools_per_axis)),
                                            "n_res_blocks": SEED_N_RES_BLOCKS, "mask_hidden": int(base_features),
                                            "mask_sigma": MASK_SIGMA}}
    if name == "rrdb":
        return {"name": "rrdb", "kwargs": {"features": int(base_features), "growth": max(1, int(base_features) // 2),
                                           "n_blocks": RRDB_BLOCKS[dimension]}}
    raise InputError(f"Unknown architecture {name!r}; the planner knows {', '.join(PLANNED_ARCHITECTURES)}")


def _shrink(patch: list[int], topology: Topology, reference: Sequence[int], square: bool,
            minimum: Sequence[int], halve: bool = False) -> list[int] | None:
    """One step smaller: the axis with the largest patch/reference ratio loses one divisor (None: at minimum).
    ``halve`` (square only): when losing a divisor would go below the minimum, halve the side instead
    (unet25d_brasyn, whose divisor is the patch edge itself up to 2^8)."""
    divisor = topology.divisor
    if square:
        side = patch[0] - divisor[0]
        if side < minimum[0] and halve:
            side = patch[0] // 2
        return [side, side] if side >= minimum[0] else None
    candidates = [i for i in range(len(patch)) if patch[i] - divisor[i] >= minimum[i]]
    if not candidates:
        candidates = [i for i in range(len(patch)) if patch[i] > minimum[i]]
        if not candidates:
            return None
        axis = max(candidates, key=lambda i: patch[i] / reference[i])
        return [minimum[i] if i == axis else p for i, p in enumerate(patch)]
    axis = max(candidates, key=lambda i: patch[i] / reference[i])
    return [p - divisor[i] if i == axis else p for i, p in enumerate(patch)]


def _coverage(patch: Sequence[int], reference: Sequence[int]) -> float:
    return min(1.0, prod(patch) / prod(reference))


def _fit_patch(spacing: Sequence[float], reference: Sequence[int], base: int, in_channels: int,
               budget: Budget, square: bool, architecture_name: str = "unet",
               kwargs: dict | None = None) -> tuple[Topology, dict, Evaluation]:
    """The largest patch (shrunk from the reference) whose step fits at the minimum batch size; ``kwargs``
    replace those of :func:`build_architecture` (the CPU RRDB's depth)."""
    dimension = len(spacing)
    patch = initial_patch_size(spacing, reference, VOXEL_BUDGET[dimension])
    if square:
        patch = [max(patch)] * 2
    minimum = [min(MIN_PATCH_EDGE, r) for r in reference]
    for _ in range(10000):  # every step removes voxels; the bound only guards against a rule change
        topology = architecture_topology(architecture_name, spacing, patch)
        architecture = build_architecture(architecture_name, topology, base, dimension)
        if kwargs:
            architecture = {**architecture, "kwargs": {**architecture["kwargs"], **kwargs}}
        evaluation = evaluate(architecture, topology.patch_size, MIN_BATCH_SIZE, in_channels, budget)
        if evaluation.fits:
            return topology, architecture, evaluation
        smaller = _shrink(list(topology.patch_size), topology, reference, square, minimum,
                          halve=architecture_name == "unet25d_brasyn")
        if smaller is None:
            break
        patch = smaller
    return topology, architecture, evaluation


def _largest_batch(architecture: dict, patch: Sequence[int], in_channels: int, budget: Budget,
                   max_batch: int) -> tuple[int, Evaluation]:
    """The largest batch in [2, max_batch] that still fits (2 when even that does not)."""
    batch = MIN_BATCH_SIZE
    best = evaluate(architecture, patch, batch, in_channels, budget)
    while batch < max_batch:
        candidate = evaluate(architecture, patch, batch + 1, in_channels, budget)
        if not candidate.fits:
            break
        batch, best = batch + 1, candidate
    return batch, best


def plan_network(spacing: Sequence[float], reference_shape: Sequence[int], dataset_voxels: float,
                 in_channels: int, budget: Budget, square: bool = False,
                 architecture_name: str = DEFAULT_ARCHITECTURE) -> PlannedNetwork:
    """Width, topology, patch and batch for one configuration.

    ``reference_shape``: what the patch should cover (the median shape; for 2.5d the square over the
    largest face). On GPU the width is nnU-Net's (32 -> 320); on CPU it is reduced 32 -> 16 -> 8 as long
    as the patch would otherwise cover < MIN_PATCH_COVERAGE of the reference; the narrowest width then
    takes whatever patch fits. The batch is the largest that fits, >= 2 and <= 5 % of the dataset's voxels.
    ``architecture_name``: which network (see ARCHITECTURE_BASES for the widths tried per architecture).
    """
    default = CPU_BASE_FEATURES if budget.device == "cpu" else GPU_BASE_FEATURES
    bases = ARCHITECTURE_BASES[budget.device].get(architecture_name, default)
    for base in bases:
        topology, architecture, evaluation = _fit_patch(spacing, reference_shape, base, in_channels, budget, square,
                                                        architecture_name)
        coverage = _coverage(topology.patch_size, reference_shape)
        if evaluation.fits and coverage >= MIN_PATCH_COVERAGE:
            break
    patch = topology.patch_size
    max_batch = int(MAX_DATASET_FRACTION * dataset_voxels / prod(patch))
    max_batch = max(MIN_BATCH_SIZE, min(max_batch, MAX_BATCH_SIZE))
    batch, evaluation = _largest_batch(architecture, patch, in_channels, budget, max_batch)
    return PlannedNetwork(architecture=architecture, topology=topology, patch_size=list(patch), batch_size=batch,
                          base_features=base, coverage=coverage, evaluation=evaluation)


def short_step_rrdb(net: PlannedNetwork, spacing: Sequence[float], reference_shape: Sequence[int],
                    in_channels: int, budget: Budget, step_time_s: float) -> PlannedNetwork:
    """CPU 3D RRDB: steps before depth, as :func:`short_step_network` for the U-Net. CPU_RRDB_BLOCKS_3D RRDB
    (residual scale CPU_RRDB_RESIDUAL_SCALE_3D) at the width the CPU rule chose (``net.base_features``); the patch,
    from nnU-Net's starting patch, loses one voxel on its axis with the largest ``patch / reference`` ratio until a
    step takes at most ``step_time_s`` (and never more than the budget's own ceiling); the batch is then the
    largest that fits, at most ``net.batch_size``.
    """
    short = replace(budget, step_time_s=min(step_time_s, budget.step_time_s))
    topology, architecture, _ = _fit_patch(spacing, reference_shape, net.base_features, in_channels, short,
                                           square=False, architecture_name="rrdb",
                                           kwargs={"n_blocks": CPU_RRDB_BLOCKS_3D,
                                                   "residual_scale": CPU_RRDB_RESIDUAL_SCALE_3D})
    patch = list(topology.patch_size)
    batch, evaluation = _largest_batch(architecture, patch, in_channels, short, max(MIN_BATCH_SIZE, net.batch_size))
    return PlannedNetwork(architecture=architecture, topology=topology, patch_size=patch, batch_size=batch,
                          base_features=net.base_features, coverage=_coverage(patch, reference_shape),
                          evaluation=evaluation)


def short_step_network(net: PlannedNetwork, spacing: Sequence[float], reference_shape: Sequence[int],
                       in_channels: int, budget: Budget, step_time_s: float) -> PlannedNetwork:
    """CPU 3D U-Net: steps before context. The depth is planned for the whole median image (the context a GPU
    plan has, whatever this CPU's speed; shallower only when even its smallest patch is too slow), the width is
    the one the CPU rule chose (``net.base_features``), and the patch is cut until a step takes at most
    ``step_time_s`` (and never more than the budget's own step ceiling).

    The axis with the largest ``patch / reference`` ratio loses one divisor (``2^pools``) at a time, never
    below two divisors (the bottleneck keeps >= 2 voxels per axis); the batch is then the largest that fits,
    at most ``net.batch_size``.
    """
    dimension = len(spacing)
    short = replace(budget, step_time_s=min(step_time_s, budget.step_time_s))
    context = initial_patch_size(spacing, reference_shape, VOXEL_BUDGET[dimension])
    while True:  # the deepest topology whose smallest patch (two divisors per axis) still fits a step
        topology = plan_topology(spacing, context)
        architecture = unet_architecture(topology, net.base_features, dimension)
        minimum = [max(2 * d, min(MIN_PATCH_EDGE, r)) for d, r in zip(topology.divisor, reference_shape)]
        if evaluate(architecture, minimum, MIN_BATCH_SIZE, in_channels, short).fits:
            break
        if topology.n_stages <= 2:
            return net  # not even a two-stage network fits: keep the plan made for the step ceiling
        context = [max(MIN_PATCH_EDGE, c // 2) for c in context]
    patch = list(topology.patch_size)
    evaluation = evaluate(architecture, patch, MIN_BATCH_SIZE, in_channels, short)
    while not evaluation.fits:
        smaller = _shrink(patch, topology, reference_shape, square=False, minimum=minimum)
        if smaller is None:
            break
        patch = smaller
        evaluation = evaluate(architecture, patch, MIN_BATCH_SIZE, in_channels, short)
    batch, evaluation = _largest_batch(architecture, patch, in_channels, short, max(MIN_BATCH_SIZE, net.batch_size))
    return PlannedNetwork(architecture=architecture, topology=replace(topology, patch_size=list(patch)),
                          patch_size=list(patch), batch_size=batch, base_features=net.base_features,
                          coverage=_coverage(patch, reference_shape), evaluation=evaluation)
