"""The shipped ICBM152 2009 tissue maps: loading, smoothing to a target resolution, sampling.

Template frame: millimetres along the stored array axes (z, y, x) = (superior, anterior, right),
0 at the centre of the stored voxel [0, 0, 0]. ``first_voxel_ras`` places that voxel in MNI space.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

DATA_FOLDER = Path(__file__).with_name("data")
TEMPLATE_SPACINGS = (1.5, 2.0)


@dataclass(frozen=True)
class Template:
    """GM/WM/CSF fractions on the template grid, already smoothed for one output resolution."""

    fractions: dict[str, np.ndarray]  # name -> float32 (z, y, x), values in [0, 1], sum <= 1
    spacing: float  # template voxel size in mm (isotropic)
    first_voxel_ras: np.ndarray  # MNI (x, y, z) mm of the centre of voxel [0, 0, 0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.fractions["GM"].shape

    @property
    def brain(self) -> np.ndarray:
        """Boolean brain mask: GM + WM + CSF >= 0.5."""
        return sum(self.fractions.values()) >= 0.5

    def brain_box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest voxel centre (template-frame mm) of the brain mask."""
        where = np.argwhere(self.brain)
        return where.min(0) * self.spacing, where.max(0) * self.spacing

    def mni_z(self, z_mm: np.ndarray | float) -> np.ndarray | float:
        """MNI z (superior) coordinate of a template-frame z position."""
        return self.first_voxel_ras[2] + z_mm

    def sample(self, points_mm: np.ndarray) -> dict[str, np.ndarray]:
        """Linearly interpolate every tissue at template-frame points of shape (3, ...); 0 outside."""
        coordinates = points_mm / self.spacing
        return {name: ndimage.map_coordinates(volume, coordinates, order=1, mode="constant", cval=0.0,
                                              prefilter=False).astype(np.float32)
                for name, volume in self.fractions.items()}


def template_spacing_for(spacing: float) -> float:
    """The shipped template to start from: the coarsest one not coarser than ``spacing`` (else the finest)."""
    usable = [s for s in TEMPLATE_SPACINGS if s <= spacing + 1e-6]
    return max(usable) if usable else min(TEMPLATE_SPACINGS)


@lru_cache(maxsize=4)
def _load_raw(template_spacing: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    path = DATA_FOLDER / f"icbm152_2009_tissues_{template_spacing:g}mm.npz"
    if not path.is_file():
        raise FileNotFoundError(f"The shipped template {path} is missing; reinstall synthunet "
                                f"(or rebuild it with python -m synthunet.dataset.example.build_templates)")
    with np.load(path) as content:
        scale = float(content["quantisation"])
        fractions = {name.upper(): content[name].astype(np.float32) / scale for name in ("gm", "wm", "csf")}
        first_voxel_ras = content["first_voxel_ras"].astype(np.float64)
    total = sum(fractions.values())
    too_much = total > 1.0
    for name in fractions:  # undo rounding overshoot so that fractions never sum above 1
        fractions[name][too_much] /= total[too_much]
    return fractions, first_voxel_ras


@lru_cache(maxsize=4)
def load_template(spacing: float) -> Template:
    """Template prepared for output voxels of ``spacing`` mm (box-smoothed when coarser than the template)."""
    template_spacing = template_spacing_for(spacing)
    fractions, first_voxel_ras = _load_raw(template_spacing)
    # A Gaussian with the variance of the extra voxel box approximates the partial-volume average.
    sigma_voxels = np.sqrt(max(spacing ** 2 - template_spacing ** 2, 0.0) / 12.0) / template_spacing
    if sigma_voxels > 0.05:
        fractions = {k: ndimage.gaussian_filter(v, sigma_voxels, mode="constant") for k, v in fractions.items()}
    return Template(fractions=fractions, spacing=template_spacing, first_voxel_ras=first_voxel_ras)


@lru_cache(maxsize=4)
def tumour_seed_candidates(spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template-frame points (N, 3) where a tumour may be centred, their distance (mm) to the brain surface,
    and whether each lies in white matter.

    Candidates lie in the cerebrum (MNI z > -8 mm, above the tentorium), at least 12 mm inside the brain
    and in parenchyma (GM + WM > 0.9).
    """
    template = load_template(spacing)
    depth = ndimage.distance_transform_edt(template.brain) * template.spacing
    z_mm = np.arange(template.shape[0]) * template.spacing
    cerebrum = (template.mni_z(z_mm) > -8.0)[:, None, None]
    parenchyma = template.fractions["GM"] + template.fractions["WM"]
    allowed = cerebrum & (depth >= 12.0) & (parenchyma > 0.9)
    where = np.argwhere(allowed)
    in_wm = template.fractions["WM"][allowed] > 0.85
    return where * template.spacing, depth[allowed], in_wm
