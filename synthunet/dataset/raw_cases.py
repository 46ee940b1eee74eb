"""Finding and reading the cases of a raw dataset (imagesTr, optional labelsTr and masksTr)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from synthunet.dataset.dataset_json import DatasetDescription, list_case_files, load_dataset_json
from synthunet.dataset.image_io import Geometry, ImageReadError, read_image
from synthunet.errors import CaseError

K = TypeVar("K", int, str)  # channel index (training cases) or channel name (inference)


@dataclass(frozen=True)
class RawCase:
    """The files of one training case; ``images`` maps channel index -> file (missing channels absent)."""

    case_id: str
    images: dict[int, Path]
    label: Path | None = None
    mask: Path | None = None


@dataclass
class LoadedCase:
    """One case in memory: images per channel index (float32, (z, y, x)), optional label and mask."""

    case_id: str
    images: dict[int, np.ndarray]
    geometry: Geometry
    label: np.ndarray | None = None
    mask: np.ndarray | None = None
    files: dict[str, str] = field(default_factory=dict)


def list_raw_cases(raw_dataset: Path, description: DatasetDescription | None = None,
                   images_folder: str = "imagesTr") -> list[RawCase]:
    """Every case of ``raw_dataset/images_folder`` with its label (``labelsTr``) and mask (``masksTr``) files."""
    raw_dataset = Path(raw_dataset)
    description = description or load_dataset_json(raw_dataset / "dataset.json")
    ending = description.file_ending
    cases, _ = list_case_files(raw_dataset / images_folder, ending)
    if not cases:
        raise FileNotFoundError(f"No images named {{case}}_XXXX{ending} in {raw_dataset / images_folder}")
    result = []
    for case_id in sorted(cases):
        label = raw_dataset / "labelsTr" / f"{case_id}{ending}"
        mask = raw_dataset / "masksTr" / f"{case_id}{ending}"
        result.append(RawCase(case_id=case_id, images=dict(sorted(cases[case_id].items())),
                              label=label if label.is_file() else None, mask=mask if mask.is_file() else None))
    return result


def read_case_images(case_id: str, files: Mapping[K, Path | str]) -> tuple[dict[K, np.ndarray], Geometry]:
    """Read every channel file of a case (float32, 3D) and their common geometry; a file that cannot be read,
    is not 3D or does not lie on the grid of the first raises a :class:`CaseError` naming the case and file."""
    images: dict[K, np.ndarray] = {}
    geometry: Geometry | None = None
    first = ""
    for channel, path in files.items():
        path = Path(path)
        try:
            array, this_geometry = read_image(path, dtype=np.float32)
        except ImageReadError as error:
            raise CaseError(f"Case {case_id}: {error}", hint=error.hint) from None
        if array.ndim != 3:
            raise CaseError(f"Case {case_id}: {path.name} is {array.ndim}D; synthUNet needs 3D images")
        if geometry is None:
            geometry, first = this_geometry, path.name
        elif differences := geometry.differences(this_geometry):
            raise CaseError(f"Case {case_id}: {path.name} does not lie on the grid of {first} "
                            f"({'; '.join(differences)})")
        images[channel] = array
    if geometry is None:
        raise CaseError(f"Case {case_id} has no image files")
    return images, geometry


def load_raw_case(case: RawCase) -> LoadedCase:
    """Read every file of a case (:func:`read_case_images`); raise an error naming the file when geometries
    disagree."""
    images, geometry = read_case_images(case.case_id, case.images)
    files = {f"image_{channel:04d}": str(path) for channel, path in case.images.items()}
    extras: dict[str, np.ndarray | None] = {"label": None, "mask": None}
    for name in extras:
        path = getattr(case, name)
        if path is None:
            continue
        array, this_geometry = read_image(path, dtype=None)
        if differences := geometry.differences(this_geometry):
            raise CaseError(f"Case {case.case_id}: {path} does not lie on the image grid ({'; '.join(differences)})")
        extras[name] = array
        files[name] = str(path)
    return LoadedCase(case_id=case.case_id, images=images, geometry=geometry, label=extras["label"],
                      mask=extras["mask"], files=files)
