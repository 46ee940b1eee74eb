"""Simulate one phantom case in memory: anatomy, tumour, acquisition grid and the four sequences.

``generate_case(index, seed, spacing)`` is deterministic: every random draw comes from a generator
seeded with ``(seed, index)``, so a case does not depend on which worker made it or in which order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthunet.dataset.example import mri_physics
from synthunet.dataset.example.anatomy import Template, load_template, tumour_seed_candidates
from synthunet.dataset.example.deformation import (AffinePose, elastic_displacement, mass_effect_displacement,
                                                   random_pose)
from synthunet.dataset.example.fields import smooth_random_field
from synthunet.dataset.example.tumour import TumourSpec, insert_tumour, sample_tumour
from synthunet.dataset.image_io import Geometry

CHANNELS = ("T1N", "T1C", "T2W", "T2F")
LABELS = {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
TISSUES = ("GM", "WM", "CSF", "NCR", "ED", "ET")
TUMOUR_TISSUES = ("NCR", "ED", "ET")
# ITK direction for arrays whose axes (z, y, x) point superior, anterior, right (LPS world).
ITK_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
GAIN_RANGE = (1.0, 1000.0)
MANTISSA_BITS = 10


@dataclass
class PhantomCase:
    """One simulated case. Arrays are (z, y, x) in the geometry's voxel grid."""

    case_id: str
    images: dict[str, np.ndarray]  # channel name -> float32, 0 outside the brain mask
    labels: np.ndarray  # uint8, BraTS labels 0/1/2/3, 0 outside the mask
    mask: np.ndarray  # uint8 brain mask
    tissue_probabilities: dict[str, np.ndarray]  # TISSUES -> float32 fractions; sum 1 inside the mask
    geometry: Geometry
    parameters: dict = field(default_factory=dict)  # JSON-friendly record of every random choice
    # channel name -> float32 noise-free, bias-free signal at the image's gain (0 outside the mask); the
    # physical limit of a prediction, never a training input (written to oracleTr/ by the command)
    oracle: dict[str, np.ndarray] = field(default_factory=dict)


def case_identifier(index: int) -> str:
    """Case id of the ``index``-th case: ``Phantom_000``, ``Phantom_001``, ..."""
    return f"Phantom_{index:03d}"


def case_rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators for each part of a case, derived from ``(seed, index)``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    children = np.random.SeedSequence([int(seed), int(index)]).spawn(5)
    return {name: np.random.default_rng(child)
            for name, child in zip(("geometry", "tumour", "physics", "noise", "texture"), children)}


@dataclass(frozen=True)
class _Grid:
    origin: np.ndarray  # subject-frame mm of simulation voxel [0, 0, 0]
    shape: tuple[int, int, int]  # simulation grid (isotropic ``spacing``)
    spacing: float
    slice_axis: int  # -1 when isotropic
    slice_factor: int


def _acquisition_grid(rng: np.random.Generator, template: Template, pose: AffinePose, spacing: float,
                      anisotropic_fraction: float) -> _Grid:
    """Field of view around the posed brain (random padding, sometimes an inferior crop) and slice thickness."""
    lo, hi = template.brain_box_mm()
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    subject = pose.to_subject(corners)
    start = subject.min(0) - rng.uniform(4.0, 20.0, size=3)
    stop = subject.max(0) + rng.uniform(4.0, 20.0, size=3)
    if rng.random() < 0.15:  # field of view that cuts off the lowest part (cerebellum, brainstem)
        start[0] += rng.uniform(10.0, 25.0)
    slice_axis, factor = -1, 1
    if rng.random() < anisotropic_fraction:
        slice_axis = int(rng.choice(3, p=(0.7, 0.15, 0.15)))
        factor = int(rng.choice((2, 3)))
    shape = [int(np.floor((b - a) / spacing)) + 1 for a, b in zip(start, stop)]
    if slice_axis >= 0:
        shape[slice_axis] = int(np.ceil(shape[slice_axis] / factor)) * factor
    return _Grid(origin=start, shape=tuple(shape), spacing=spacing, slice_axis=slice_axis, slice_factor=factor)


def _with_slice_thickness(grid: _Grid, thickness_mm: float) -> _Grid:
    """The same field of view with z voxels ``thickness_mm`` thick (the nearest whole multiple of the spacing)."""
    factor = max(1, int(np.floor(thickness_mm / grid.spacing + 0.5)))  # halves round up; 0 mm = isotropic
    shape = list(grid.shape)  # simulation voxels (isotropic); z becomes a whole number of thick slices
    shape[0] = int(np.ceil(shape[0] / factor)) * factor
    return _Grid(origin=grid.origin, shape=tuple(shape), spacing=grid.spacing, slice_axis=0 if factor > 1 else -1,
                 slice_factor=factor)


def _choose_tumour(rng: np.random.Generator, pose: AffinePose) -> TumourSpec:
    # Candidates always come from the 2 mm template, so a seed puts the tumour at the same place at any spacing.
    points, depth, in_wm = tumour_seed_candidates(2.0)
    pool = np.flatnonzero(in_wm) if (rng.random() < 0.85 and in_wm.any()) else np.arange(len(points))
    pick = int(rng.choice(pool))
    centre = pose.to_subject(points[pick])
    max_radius = float(depth[pick] * pose.scales.mean())
    return sample_tumour(rng, centre, max_radius)


def _block_average(volume: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Average consecutive groups of ``factor`` voxels along ``axis`` (thick-slice partial volume)."""
    if axis < 0 or factor == 1:
        return volume
    shape = list(volume.shape)
    shape[axis:axis + 1] = [shape[axis] // factor, factor]
    return volume.reshape(shape).mean(axis=axis + 1).astype(np.float32)


def _labels_and_mask(fractions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    total = sum(fractions.values())
    mask = total >= 0.5
    healthy = fractions["GM"] + fractions["WM"] + fractions["CSF"]
    stacked = np.stack([healthy, fractions["NCR"], fractions["ED"], fractions["ET"]])
    winner = np.argmax(stacked, axis=0)  # 0 healthy, 1 NCR, 2 ED, 3 ET: the BraTS label values
    labels = np.where(mask, winner, 0).astype(np.uint8)
    return labels, mask.astype(np.uint8)


def _geometry(grid: _Grid, template: Template) -> Geometry:
    spacing = [grid.spacing] * 3
    origin = grid.origin.copy()
    if grid.slice_axis >= 0:
        spacing[grid.slice_axis] *= grid.slice_factor
        origin[grid.slice_axis] += (grid.slice_factor - 1) / 2.0 * grid.spacing
    shape = list(grid.shape)
    if grid.slice_axis >= 0:
        shape[grid.slice_axis] //= grid.slice_factor
    # Subject frame = template frame placed in MNI space; (z, y, x) mm -> RAS -> ITK's LPS.
    ras = template.first_voxel_ras + origin[::-1]
    return Geometry(itk_spacing=tuple(float(s) for s in spacing[::-1]),
                    itk_origin=(float(-ras[0]), float(-ras[1]), float(ras[2])),
                    itk_direction=ITK_DIRECTION, shape=tuple(shape))


def _round_mantissa(array: np.ndarray, bits: int = MANTISSA_BITS) -> np.ndarray:
    """Keep ``bits`` mantissa bits of non-negative float32 values (relative error < 2**-(bits+1)); far below
    the noise, and it lets gzip compress the files several times better."""
    drop = 23 - bits
    raw = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = (raw + np.uint32(1 << (drop - 1))) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    return rounded.view(np.float32)


def _tumour_parameter_maps(rng: np.random.Generator, box: tuple[slice, ...], shape: tuple[int, ...],
                           spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth voxelwise multipliers (T1, T2, gadolinium) that give the tumour compartments some texture."""
    box_shape = tuple(s.stop - s.start for s in box)
    maps = []
    for amplitude in (0.06, 0.06, 0.35):
        local = np.exp(amplitude * smooth_random_field(rng, box_shape, spacing, 8.0))
        full = np.ones(shape, dtype=np.float32)
        full[box] = local
        maps.append(full)
    return maps[0], maps[1], maps[2]


def simulate_images(fractions: dict[str, np.ndarray], mask: np.ndarray, spacing: tuple[float, ...],
                    rngs: dict[str, np.random.Generator], kind: str, oracle: bool = True,
                    family: mri_physics.ProtocolFamily = mri_physics.PROTOCOL_FAMILIES["default"]
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Mix the tissue signals of every channel, then bias field, Rician noise and scanner gain.

    Returns the images, the oracle signals (each channel's mixed signal relative to WM times the same gain,
    without bias field and noise; empty when ``oracle`` is False) and the record. The oracle is made from
    values already drawn and uses no random numbers, so it does not change the images.
    """
    physics_rng, noise_rng, texture_rng = rngs["physics"], rngs["noise"], rngs["texture"]
    tissues = mri_physics.sample_tissue_parameters(physics_rng, family.field_strength_t)
    protocol = family.sample(physics_rng)
    gadolinium = dict(mri_physics.NOMINAL_GADOLINIUM_MM)
    gadolinium["ET"] = float(physics_rng.uniform(*mri_physics.ET_GADOLINIUM_RANGE_MM))
    # Label 1 of a non-enhancing tumour is non-enhancing tumour tissue, not necrosis.
    core_tissue = "NET" if kind == "non_enhancing" else "NCR"
    tumour = sum(fractions[t] for t in TUMOUR_TISSUES) > 0
    where = np.argwhere(tumour)
    box = tuple(slice(a, b + 1) for a, b in zip(where.min(0), where.max(0))) if len(where) else \
        tuple(slice(0, 1) for _ in range(3))
    t1_map, t2_map, gd_map = _tumour_parameter_maps(texture_rng, box, mask.shape, spacing)
    images, oracles = {}, {}
    record = {"protocol_family": family.name, "protocol": protocol.to_dict(), "tissues": {}, "gadolinium_mM": {},
              "channels": {}}
    brain = mask.astype(bool)
    for channel in CHANNELS:
        signal = np.zeros(mask.shape, dtype=np.float32)
        for name in TISSUES:
            source = core_tissue if name == "NCR" else name
            p = tissues[source]
            if name in TUMOUR_TISSUES:
                value = mri_physics.sequence_signal(channel, protocol, p.pd, p.t1 * t1_map[box], p.t2 * t2_map[box],
                                                    gadolinium[source] * gd_map[box])
                signal[box] += fractions[name][box] * value.astype(np.float32)
            else:
                signal += fractions[name] * np.float32(mri_physics.sequence_signal(channel, protocol, p.pd, p.t1,
                                                                                  p.t2, gadolinium[source]))
        wm = tissues["WM"]
        reference = float(mri_physics.sequence_signal(channel, protocol, wm.pd, wm.t1, wm.t2, gadolinium["WM"]))
        bias_strength = float(noise_rng.uniform(*family.bias_log_std))
        bias = np.exp(bias_strength * smooth_random_field(noise_rng, mask.shape, spacing,
                                                          float(noise_rng.uniform(80.0, 140.0))))
        snr = float(noise_rng.uniform(*family.snr_wm))
        noisy = mri_physics.add_rician_noise(noise_rng, bias * signal / reference, 1.0 / snr)
        gain = float(np.exp(noise_rng.uniform(np.log(GAIN_RANGE[0]), np.log(GAIN_RANGE[1]))))
        images[channel] = _round_mantissa(np.where(brain, gain * noisy, 0.0).astype(np.float32))
        if oracle:
            clean = gain * (signal.astype(np.float64) / reference)
            oracles[channel] = _round_mantissa(np.where(brain, clean, 0.0).astype(np.float32))
        record["channels"][channel] = {"gain": round(gain, 4), "snr_wm": round(snr, 2),
                                       "bias_log_std": round(bias_strength, 4)}
    record["tissues"] = {name: {"t1_ms": round(p.t1, 1), "t2_ms": round(p.t2, 1), "pd": round(p.pd, 3)}
                         for name, p in tissues.items()}
    record["gadolinium_mM"] = {k: round(v, 4) for k, v in gadolinium.items()}
    return images, oracles, record


def generate_case(index: int, seed: int = 0, spacing: float = 2.0, anisotropic_fraction: float = 0.25,
                  oracle: bool = True, protocol: str = "default") -> PhantomCase:
    """Simulate case ``index`` of the phantom dataset made with ``seed`` at ``spacing`` mm (in-plane).

    ``anisotropic_fraction`` of the cases get 2x or 3x thicker voxels along one axis (mostly z).
    ``oracle``: also make ``case.oracle`` (noise-free, bias-free signals; the images are the same either way).
    ``protocol``: a key of :data:`mri_physics.PROTOCOL_FAMILIES`. The anatomy, pose and tumour of a case do not
    depend on it (the same random draws); a family with a slice thickness gives every case that thickness along
    z (the nearest whole multiple of ``spacing``) instead of ``anisotropic_fraction``.
    """
    if protocol not in mri_physics.PROTOCOL_FAMILIES:
        raise ValueError(f"Unknown protocol {protocol!r}; known: {', '.join(mri_physics.PROTOCOL_FAMILIES)}")
    family = mri_physics.PROTOCOL_FAMILIES[protocol]
    if spacing <= 0 or spacing > 8:
        raise ValueError(f"spacing must be in (0, 8] mm, got {spacing}")
    if not 0.0 <= anisotropic_fraction <= 1.0:
        raise ValueError(f"anisotropic_fraction must be in [0, 1], got {anisotropic_fraction}")
    rngs = case_rngs(seed, index)
    geometry_rng = rngs["geometry"]
    template = load_template(spacing)
    lo, hi = template.brain_box_mm()
    pose = random_pose(geometry_rng, (lo + hi) / 2.0)
    grid = _acquisition_grid(geometry_rng, template, pose, spacing, anisotropic_fraction)
    if family.slice_thickness_mm is not None:
        grid = _with_slice_thickness(grid, family.slice_thickness_mm)
    tumour = _choose_tumour(rngs["tumour"], pose)
    axes_mm = [grid.origin[d] + np.arange(grid.shape[d], dtype=np.float32) * spacing for d in range(3)]
    points = np.stack(np.meshgrid(*axes_mm, indexing="ij")).astype(np.float32)
    elastic_amplitude = float(geometry_rng.uniform(1.5, 4.0))
    points += elastic_displacement(geometry_rng, grid.shape, spacing, elastic_amplitude)
    points += mass_effect_displacement(points, tumour.centre, tumour.radius_mm, tumour.mass_effect_mm)
    healthy = template.sample(pose.to_template(points))
    del points
    fractions = insert_tumour(rngs["tumour"], tumour, healthy, grid.origin, spacing)
    fractions = {name: _block_average(fractions[name], grid.slice_axis, grid.slice_factor) for name in TISSUES}
    labels, mask = _labels_and_mask(fractions)
    total = sum(fractions.values())
    inside = mask.astype(bool)
    fractions = {name: np.where(inside, v / np.maximum(total, 1e-6), 0.0).astype(np.float32)
                 for name, v in fractions.items()}
    geometry = _geometry(grid, template)
    images, oracles, physics_record = simulate_images(fractions, mask, geometry.spacing, rngs, tumour.kind, oracle,
                                                      family)
    parameters = {"index": index, "seed": seed, "spacing_zyx_mm": list(geometry.spacing),
                  "pose": {"rotation": np.round(pose.rotation, 5).tolist(), "scales": np.round(pose.scales, 4).tolist(),
                           "translation_mm": np.round(pose.translation, 2).tolist(),
                           "elastic_std_mm": round(elastic_amplitude, 3)},
                  "tumour": tumour.summary(), **physics_record}
    return PhantomCase(case_id=case_identifier(index), images=images, labels=labels, mask=mask,
                       tissue_probabilities=fractions, geometry=geometry, parameters=parameters, oracle=oracles)
