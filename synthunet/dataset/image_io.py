"""Reading and writing medical images with SimpleITK, keeping the geometry.

Arrays are in SimpleITK's (z, y, x) order; ``Geometry.spacing`` is in the same order, as in
nnU-Net. ``Geometry.itk_*`` hold SimpleITK's (x, y, z) values so an image can be written back
exactly where it came from.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """Where an image lies in space; JSON-serialisable through :meth:`to_dict`."""

    itk_spacing: tuple[float, ...]
    itk_origin: tuple[float, ...]
    itk_direction: tuple[float, ...]
    shape: tuple[int, ...]  # array shape (z, y, x)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel spacing in array axis order (z, y, x)."""
        return tuple(self.itk_spacing[::-1])

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, content: dict) -> "Geometry":
        return cls(itk_spacing=tuple(float(v) for v in content["itk_spacing"]),
                   itk_origin=tuple(float(v) for v in content["itk_origin"]),
                   itk_direction=tuple(float(v) for v in content["itk_direction"]),
                   shape=tuple(int(v) for v in content["shape"]))

    @classmethod
    def from_image(cls, image: sitk.Image) -> "Geometry":
        return cls(itk_spacing=tuple(image.GetSpacing()), itk_origin=tuple(image.GetOrigin()),
                   itk_direction=tuple(image.GetDirection()), shape=tuple(image.GetSize()[::-1]))

    def matches(self, other: "Geometry", tolerance: float = 1e-3) -> list[str]:
        """Names of the properties (shape, spacing, origin, direction) that differ from ``other``."""
        differences = []
        if self.shape != other.shape:
            differences.append(f"shape {self.shape} vs {other.shape}")
        for name in ("itk_spacing", "itk_origin", "itk_direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            scale = 1.0 if name == "itk_direction" else max(1.0, float(np.abs(a).max(initial=0)))
            if a.shape != b.shape or not np.allclose(a, b, atol=tolerance * scale):
                differences.append(f"{name[4:]} {tuple(np.round(a, 4))} vs {tuple(np.round(b, 4))}")
        return differences


def read_image(path: Path | str, dtype=np.float32) -> tuple[np.ndarray, Geometry]:
    """Read an image file SimpleITK understands; return the (z, y, x) array and its geometry."""
    image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: images with {image.GetNumberOfComponentsPerPixel()} components per voxel are not supported")
    array = sitk.GetArrayFromImage(image)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array, Geometry.from_image(image)


def read_geometry(path: Path | str) -> tuple[Geometry, str]:
    """Read only the header of an image: its geometry and SimpleITK pixel type name."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    geometry = Geometry(itk_spacing=tuple(reader.GetSpacing()), itk_origin=tuple(reader.GetOrigin()),
                        itk_direction=tuple(reader.GetDirection()), shape=tuple(reader.GetSize()[::-1]))
    return geometry, sitk.GetPixelIDValueAsString(reader.GetPixelID())


def temporary_sibling(path: Path) -> Path:
    """A unique temporary name in the same folder that keeps the file ending (for atomic writes)."""
    path = Path(path)
    return path.with_name(f".tmp_{uuid.uuid4().hex[:8]}_{path.name}")


def write_image(array: np.ndarray, geometry: Geometry, path: Path | str, compress: bool = True) -> None:
    """Write a (z, y, x) array with the given geometry; atomic (temporary name, then rename)."""
    path = Path(path)
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"Array shape {array.shape} does not match geometry shape {geometry.shape} for {path}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.itk_spacing)
    image.SetOrigin(geometry.itk_origin)
    image.SetDirection(geometry.itk_direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        sitk.WriteImage(image, str(temporary), useCompression=compress)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
