"""A glioma-like tumour: necrotic core, enhancing rim, and oedema that spreads along white matter.

Compartments are partial-volume fractions on the simulation grid (isotropic voxels):

* core: a lobulated ellipsoid ``rho(x) < 1`` (``rho`` = ellipsoidal radius, perturbed by a smooth
  random field); it replaces whatever healthy tissue (GM, WM, CSF) was there;
* necrosis: ``rho < rho_n`` inside the core (its own perturbation); the rest of the core is the
  enhancing rim. ``solid`` tumours have no necrosis; ``non_enhancing`` ones have a core of
  non-enhancing tumour (label 1, like necrosis, with other tissue parameters) and no label 3;
* oedema: geodesic distance from the core through the parenchyma with a travel speed of 1 in WM,
  0.25 in GM and 0.02 in CSF (skimage.graph.MCP_Geometric); parenchyma closer than the oedema
  extent turns into oedema; CSF is left alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation
from skimage.graph import MCP_Geometric

from synthunet.dataset.example.fields import fit_shape, smooth_random_field

TUMOUR_KINDS = ("necrotic", "solid", "non_enhancing")
KIND_PROBABILITIES = (0.55, 0.2, 0.25)
SPEED = {"WM": 1.0, "GM": 0.25, "CSF": 0.02}


@dataclass(frozen=True)
class TumourSpec:
    """Everything random about a case's tumour (positions in subject-frame mm)."""

    kind: str
    centre: np.ndarray  # (3,) subject frame, (z, y, x) mm
    radius_mm: float  # core radius (geometric mean of the ellipsoid axes)
    axes: np.ndarray  # (3,) relative semi-axis lengths, geometric mean 1
    orientation: np.ndarray  # (3, 3) rotation of the ellipsoid
    irregularity: float  # amplitude of the log-radius perturbation of the core
    necrosis_fraction: float  # rho_n; 0 when there is no necrosis
    oedema_mm: float  # geodesic extent of the oedema beyond the core
    mass_effect_mm: float  # radial displacement of the surrounding tissue at the core boundary

    def summary(self) -> dict:
        """JSON-friendly description."""
        return {"kind": self.kind, "centre_mm": [round(float(v), 2) for v in self.centre],
                "radius_mm": round(self.radius_mm, 2), "axes": [round(float(v), 3) for v in self.axes],
                "necrosis_fraction": round(self.necrosis_fraction, 3), "oedema_mm": round(self.oedema_mm, 2),
                "mass_effect_mm": round(self.mass_effect_mm, 2), "irregularity": round(self.irregularity, 3)}


def sample_tumour(rng: np.random.Generator, centre: np.ndarray, max_radius_mm: float) -> TumourSpec:
    """Draw kind, size, shape, oedema extent and mass effect for a tumour centred at ``centre``."""
    kind = str(rng.choice(TUMOUR_KINDS, p=KIND_PROBABILITIES))
    radius = float(min(rng.uniform(8.0, 22.0), max_radius_mm))
    axes = np.exp(rng.normal(0.0, 0.15, size=3))
    axes /= np.prod(axes) ** (1 / 3)
    necrosis = float(rng.uniform(0.45, 0.75)) if kind == "necrotic" else 0.0
    oedema = float(rng.uniform(4.0, 16.0) if kind == "non_enhancing" else rng.uniform(6.0, 30.0))
    return TumourSpec(kind=kind, centre=np.asarray(centre, dtype=float), radius_mm=radius, axes=axes,
                      orientation=Rotation.random(random_state=rng).as_matrix(),
                      irregularity=float(rng.uniform(0.08, 0.22)), necrosis_fraction=necrosis,
                      oedema_mm=oedema, mass_effect_mm=float(rng.uniform(0.15, 0.5) * radius))


def _ramp(signed_mm: np.ndarray, spacing: float) -> np.ndarray:
    """Partial-volume step: 1 well inside (positive), 0 well outside, linear over one voxel."""
    return np.clip(signed_mm / spacing + 0.5, 0.0, 1.0).astype(np.float32)


def tumour_box(spec: TumourSpec, origin: np.ndarray, spacing: float, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Voxel box (on a grid with voxel 0 at ``origin`` mm) that holds the core and its oedema."""
    reach = spec.radius_mm * float(spec.axes.max()) * (1.0 + 3.0 * spec.irregularity) + spec.oedema_mm * 1.4
    reach += 3.0 * spacing
    lo = np.floor((spec.centre - reach - origin) / spacing).astype(int)
    hi = np.ceil((spec.centre + reach - origin) / spacing).astype(int) + 1
    return tuple(slice(max(0, a), min(n, b)) for a, b, n in zip(lo, hi, shape))


def insert_tumour(rng: np.random.Generator, spec: TumourSpec, fractions: dict[str, np.ndarray],
                  origin: np.ndarray, spacing: float) -> dict[str, np.ndarray]:
    """Add NCR, ED and ET fractions to ``fractions`` (GM, WM, CSF on an isotropic grid); return the new dict.

    Healthy fractions shrink where tumour appears, so the total per voxel never grows.
    """
    shape = fractions["GM"].shape
    result = {name: volume.copy() for name, volume in fractions.items()}
    for name in ("NCR", "ED", "ET"):
        result[name] = np.zeros(shape, dtype=np.float32)
    box = tumour_box(spec, np.asarray(origin, dtype=float), spacing, shape)
    local = {name: volume[box] for name, volume in result.items()}
    box_shape = local["GM"].shape
    if min(box_shape) < 2:
        raise ValueError(f"Tumour at {spec.centre} lies outside the simulation grid")
    starts = np.asarray([s.start for s in box], dtype=float)
    axes_mm = [origin[d] + (starts[d] + np.arange(box_shape[d])) * spacing for d in range(3)]
    offset = np.stack(np.meshgrid(*axes_mm, indexing="ij")) - spec.centre.reshape(3, 1, 1, 1)
    # Ellipsoidal radius in the tumour's own axes, perturbed by a smooth random log-radius field.
    aligned = np.tensordot(spec.orientation.T, offset, axes=1) / (spec.radius_mm * spec.axes).reshape(3, 1, 1, 1)
    correlation = max(0.8 * spec.radius_mm, 2.5 * spacing)
    rho = np.sqrt((aligned ** 2).sum(0)) * np.exp(-spec.irregularity * smooth_random_field(
        rng, box_shape, spacing, correlation))
    healthy_total = local["GM"] + local["WM"] + local["CSF"]
    core = np.minimum(_ramp((1.0 - rho) * spec.radius_mm, spacing), healthy_total)
    if spec.necrosis_fraction > 0:
        necrosis_radius = spec.necrosis_fraction * np.exp(0.15 * smooth_random_field(rng, box_shape, spacing,
                                                                                      correlation))
        necrotic = core * _ramp((necrosis_radius - rho) * spec.radius_mm, spacing)
    else:
        necrotic = np.zeros_like(core)
    if spec.kind == "non_enhancing":
        necrotic, enhancing = core, np.zeros_like(core)
    else:
        enhancing = core - necrotic
    keep = np.where(healthy_total > 0, 1.0 - core / np.maximum(healthy_total, 1e-6), 0.0).astype(np.float32)
    for name in ("GM", "WM", "CSF"):
        local[name] *= keep
    oedema_strength = _oedema_strength(rng, spec, local, core, spacing)
    oedema = oedema_strength * (local["GM"] + local["WM"])
    local["GM"] *= 1.0 - oedema_strength
    local["WM"] *= 1.0 - oedema_strength
    local["NCR"][...] = necrotic
    local["ET"][...] = enhancing
    local["ED"][...] = oedema
    return result


def _oedema_strength(rng: np.random.Generator, spec: TumourSpec, local: dict[str, np.ndarray],
                     core: np.ndarray, spacing: float) -> np.ndarray:
    """0..1 per voxel: how far oedema has replaced the parenchyma (geodesic spread from the core)."""
    speed = SPEED["WM"] * local["WM"] + SPEED["GM"] * local["GM"] + SPEED["CSF"] * local["CSF"] + core
    # Below 2 mm the geodesic distance is computed on a 2 mm grid and interpolated back (it is smooth).
    factor = 2.0 / spacing if spacing < 1.99 else 1.0
    if factor > 1.0:
        speed = ndimage.zoom(speed, 1.0 / factor, order=1, grid_mode=True, mode="nearest")
        core_coarse = ndimage.zoom(core, 1.0 / factor, order=1, grid_mode=True, mode="nearest")
    else:
        core_coarse = core
    costs = 1.0 / np.maximum(speed, 0.01)
    seeds = np.argwhere(core_coarse >= 0.5)
    if len(seeds) == 0:
        seeds = np.argwhere(core_coarse == core_coarse.max())
    graph = MCP_Geometric(costs.astype(np.float64), fully_connected=True, sampling=(spacing * factor,) * 3)
    distance, _ = graph.find_costs([tuple(p) for p in seeds])
    distance = np.nan_to_num(distance, nan=1e9, posinf=1e9)
    if factor > 1.0:
        zoom = np.asarray(core.shape) / np.asarray(distance.shape)
        distance = fit_shape(ndimage.zoom(distance, zoom, order=1, grid_mode=True, mode="nearest"), core.shape)
    extent = spec.oedema_mm * np.exp(0.25 * smooth_random_field(rng, core.shape, spacing,
                                                                max(spec.oedema_mm, 3 * spacing)))
    return _ramp(extent - distance, spacing)
