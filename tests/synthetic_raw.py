"""Tiny synthetic raw datasets for tests (random smooth 'brains' in the synthUNet raw format).

``make_tiny_raw_dataset(tmp_path / "Dataset999_Tiny", n_cases=3, shape=(24, 28, 26))`` writes
``dataset.json``, ``imagesTr/{case}_{XXXX}.nii.gz`` and optionally ``labelsTr/`` and ``masksTr/``.
Every volume is zero outside an ellipsoidal brain and continuous (no tied values) inside it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from synthunet.dataset.image_io import Geometry, write_image

DEFAULT_CHANNELS = ("T1N", "T1C", "T2W", "T2F")
CHANNEL_SCALES = {"T1N": 600.0, "T1C": 900.0, "T2W": 1500.0, "T2F": 400.0}
OBLIQUE_DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a 90 degree rotation about z


def ellipsoid(shape: Sequence[int], radii: Sequence[float] = (0.8, 0.85, 0.75),
              centre: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Boolean ellipsoid filling most of ``shape`` (radii and centre in units of the half-extent)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) < 1


def smooth_brain_image(shape: Sequence[int], brain: np.ndarray, rng: np.random.Generator, scale: float = 500.0,
                       sigma: float = 2.0) -> np.ndarray:
    """Positive, smooth, continuous intensities inside ``brain`` and 0 outside (float32)."""
    smooth = gaussian_filter(rng.normal(size=tuple(shape)), sigma)
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-12)
    gain = rng.uniform(0.7, 1.4)
    image = scale * gain * (1.0 + 0.25 * smooth) + rng.normal(scale=scale * 0.01, size=tuple(shape))
    image = np.clip(image, scale * 0.05, None)
    image[~brain] = 0
    return image.astype(np.float32)


def tumour_labels(brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Nested spheres labelled 2 (oedema), 3 (enhancing) and 1 (necrosis) inside the brain (uint8)."""
    shape = brain.shape
    centre = [rng.uniform(-0.3, 0.3) for _ in shape]
    labels = np.zeros(shape, dtype=np.uint8)
    for value, radius in ((2, 0.35), (3, 0.22), (1, 0.12)):
        labels[ellipsoid(shape, (radius,) * 3, centre)] = value
    labels[~brain] = 0
    return labels


def make_tiny_raw_dataset(folder: Path | str, n_cases: int = 3, shape: Sequence[int] = (24, 28, 26),
                          channels: Sequence[str] = DEFAULT_CHANNELS, with_labels: bool = True,
                          with_masks: bool = True, anisotropic: bool = False, seed: int = 0,
                          direction: Sequence[float] | None = None, vary: bool = True,
                          file_ending: str = ".nii.gz") -> Path:
    """Write a valid raw dataset to ``folder`` (e.g. ``.../Dataset999_Tiny``) and return the folder.

    ``anisotropic`` gives spacing (z, y, x) = (4, 1, 1) mm; ``vary`` makes shapes and spacings differ a
    little between cases (case ``i`` has spacing factor ``1 + 0.1 i`` along x and shape ``+i`` along y).
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    for index in range(n_cases):
        case_id = f"case_{index:03d}"
        case_shape = tuple(int(s) for s in shape)
        spacing_zyx = [4.0, 1.0, 1.0] if anisotropic else [1.0, 1.0, 1.0]
        if vary:
            case_shape = (case_shape[0], case_shape[1] + index, case_shape[2])
            spacing_zyx[2] *= 1.0 + 0.1 * index
        geometry = Geometry(itk_spacing=tuple(spacing_zyx[::-1]), itk_origin=(10.0 * index, -5.0, 3.0),
                            itk_direction=tuple(direction) if direction is not None else
                            (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), shape=case_shape)
        brain = ellipsoid(case_shape, centre=[rng.uniform(-0.05, 0.05) for _ in case_shape])
        for channel, name in enumerate(channels):
            image = smooth_brain_image(case_shape, brain, rng, CHANNEL_SCALES.get(name, 500.0))
            write_image(image, geometry, folder / "imagesTr" / f"{case_id}_{channel:04d}{file_ending}")
        if with_labels:
            write_image(tumour_labels(brain, rng), geometry, folder / "labelsTr" / f"{case_id}{file_ending}")
        if with_masks:
            write_image(brain.astype(np.uint8), geometry, folder / "masksTr" / f"{case_id}{file_ending}")
    content = {"channel_names": {str(i): name for i, name in enumerate(channels)}, "numTraining": n_cases,
               "file_ending": file_ending, "name": folder.name}
    if with_labels:
        content["labels"] = {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
    (folder / "dataset.json").write_text(json.dumps(content, indent=1))
    return folder
