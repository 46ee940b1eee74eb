"""Reading and writing medical images with SimpleITK, keeping the geometry.

Arrays are in SimpleITK's (z, y, x) order; ``Geometry.spacing`` is in the same order, as in
nnU-Net. ``Geometry.itk_*`` hold SimpleITK's (x, y, z) values so an image can be written back
exactly where it came from.

:func:`read_image` is the one way every synthUNet command reads an image. It refuses, with an
:class:`ImageReadError` naming the file, anything that would otherwise give silently wrong numbers:

* a header declaring more than ``SYNTHUNET_MAX_IMAGE_VOXELS`` voxels (default 1024^3), before anything
  is allocated; a header declaring no voxels; vector images;
* for NIfTI (``.nii``, ``.nii.gz``): a gzip stream that ends early or whose checksum does not match, and a
  file holding fewer bytes of voxel data than its header declares (SimpleITK's reader fills the missing
  part with zeros without a word); the whole compressed stream is read once and the voxels are taken from
  it;
* NaN or infinite voxels (SimpleITK's NIfTI reader turns them into 0, so they are checked in the stored
  values).

Compression is recognised by content, not by name: an uncompressed NIfTI file named ``.nii.gz`` is read
like a ``.nii`` (as SimpleITK does). Other formats (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``) are read by
SimpleITK, which already refuses truncated files; their values are checked for NaN/Inf too.
"""
from __future__ import annotations

import math
import os
import re
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import SimpleITK as sitk

from synthunet import env
from synthunet.errors import SynthUNetError
from synthunet.utilities.atomic_io import temporary_sibling

MAX_VOXELS_ENV = env.MAX_IMAGE_VOXELS
DEFAULT_MAX_VOXELS = 1024 ** 3
NIFTI_ENDINGS = (".nii", ".nii.gz")
#: NIfTI datatype codes read directly (others -- RGB, complex, float128 -- go through SimpleITK)
_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                 1280: "u8"}
_SITK_DTYPES = {sitk.sitkUInt8: np.uint8, sitk.sitkInt8: np.int8, sitk.sitkUInt16: np.uint16,
                sitk.sitkInt16: np.int16, sitk.sitkUInt32: np.uint32, sitk.sitkInt32: np.int32,
                sitk.sitkUInt64: np.uint64, sitk.sitkInt64: np.int64, sitk.sitkFloat32: np.float32,
                sitk.sitkFloat64: np.float64}
_GZIP_MAGIC = b"\x1f\x8b"
_EXTENSION_ALLOWANCE = 64 * 1024 ** 2  # bytes a NIfTI file may hold beyond its voxels (header extensions)


class ImageReadError(SynthUNetError, ValueError):
    """An image file cannot be used: unreadable, truncated, corrupt, not finite or implausibly large.

    ``path`` is the file, ``reason`` what is wrong with it (``str(error)`` is ``"{path}: {reason}"``).
    """

    hint = ("re-export or copy the file again (synth_validate_dataset -d ID lists every such file of a "
            "training dataset)")

    def __init__(self, path: Path | str, reason: str, hint: str | None = None) -> None:
        super().__init__(str(path), reason, hint=hint)
        self.path, self.reason = Path(path), reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


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

    def differences(self, other: "Geometry", tolerance: float = 1e-3) -> list[str]:
        """What differs from ``other`` (shape, spacing, origin, direction), one entry each; empty when the two
        match within ``tolerance``."""
        differences = []
        if self.shape != other.shape:
            differences.append(f"shape {self.shape} vs {other.shape}")
        for name in ("itk_spacing", "itk_origin", "itk_direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            scale = 1.0 if name == "itk_direction" else max(1.0, float(np.abs(a).max(initial=0)))
            if a.shape != b.shape or not np.allclose(a, b, atol=tolerance * scale):
                differences.append(f"{name[4:]} {tuple(np.round(a, 4))} vs {tuple(np.round(b, 4))}")
        return differences


def max_image_voxels() -> int:
    """The largest image (in voxels) :func:`read_image` reads: ``$SYNTHUNET_MAX_IMAGE_VOXELS`` or 1024^3."""
    value = env.get(MAX_VOXELS_ENV, "")
    try:
        return int(float(value)) if value.strip() else DEFAULT_MAX_VOXELS
    except ValueError:
        raise SynthUNetError(f"{MAX_VOXELS_ENV} must be a number of voxels, got {value!r}") from None


def _itk_reason(error: Exception) -> str:
    """The informative line of a SimpleITK exception (they carry a source location and a C++ trace)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", line.split("ERROR:", 1)[1].strip())
    return lines[-1] if lines else type(error).__name__


def _open_header(path: Path) -> sitk.ImageFileReader:
    """A SimpleITK reader that has read the header of ``path``; every problem is an :class:`ImageReadError`."""
    if not path.is_file():
        raise ImageReadError(path, "is a folder, not an image file" if path.is_dir() else "does not exist",
                             hint="check the path (a typo, a missing sequence, or a folder that was moved?)")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "is empty (0 bytes)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ImageReadError(path, f"cannot be read as an image ({_itk_reason(error)})") from None
    return reader


def _geometry(reader: sitk.ImageFileReader) -> Geometry:
    return Geometry(itk_spacing=tuple(reader.GetSpacing()), itk_origin=tuple(reader.GetOrigin()),
                    itk_direction=tuple(reader.GetDirection()), shape=tuple(reader.GetSize()[::-1]))


def _check_size(path: Path, reader: sitk.ImageFileReader) -> int:
    """Number of voxels the header declares; refuse empty, vector and implausibly large images."""
    size = tuple(int(s) for s in reader.GetSize())
    components = reader.GetNumberOfComponents()
    if components != 1:
        raise ImageReadError(path, f"has {components} components per voxel; synthUNet reads scalar images only")
    voxels = math.prod(size)
    if voxels <= 0:
        raise ImageReadError(path, f"declares no voxels (size {' x '.join(map(str, size))})")
    limit = max_image_voxels()
    if voxels > limit:
        raise ImageReadError(path, f"its header declares {' x '.join(map(str, size))} = {voxels:.3g} voxels, more "
                                   f"than synthUNet reads ({limit:.3g}); the header is probably corrupt",
                             hint=f"if the image really is that large, raise {MAX_VOXELS_ENV}")
    return voxels


@dataclass(frozen=True)
class _NiftiHeader:
    """The fields of a single-file NIfTI-1/-2 header that locate and decode the voxels."""

    shape: tuple[int, ...]  # file order (i, j, k, ...)
    dtype: np.dtype | None  # None: a type read through SimpleITK (RGB, complex, ...)
    bytes_per_voxel: float
    vox_offset: int
    scaled: bool  # scl_slope / scl_inter change the values

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def data_bytes(self) -> int:
        return math.ceil(self.voxels * self.bytes_per_voxel)


def _parse_nifti_header(path: Path, block: bytes) -> _NiftiHeader | None:
    """Parse the first bytes of a NIfTI file; None for other files (SimpleITK decides what they are)."""
    for order in "<>":
        if len(block) >= 4 and struct.unpack(order + "i", block[:4])[0] in (348, 540):
            break
    else:
        return None
    if struct.unpack(order + "i", block[:4])[0] == 348:
        if len(block) < 348:
            raise ImageReadError(path, "is truncated: it ends inside its NIfTI header")
        dims = struct.unpack(order + "8h", block[40:56])
        datatype, bitpix = struct.unpack(order + "2h", block[70:74])
        vox_offset = struct.unpack(order + "f", block[108:112])[0]
        slope, inter = struct.unpack(order + "2f", block[112:120])
        magic = block[344:347]
    else:
        if len(block) < 540:
            raise ImageReadError(path, "is truncated: it ends inside its NIfTI header")
        datatype, bitpix = struct.unpack(order + "2h", block[12:16])
        dims = struct.unpack(order + "8q", block[16:80])
        vox_offset = struct.unpack(order + "q", block[168:176])[0]
        slope, inter = struct.unpack(order + "2d", block[176:192])
        magic = block[4:7]
    if magic not in (b"n+1", b"n+2") or not 1 <= dims[0] <= 7 or bitpix <= 0 or not math.isfinite(vox_offset):
        return None  # a header/image pair, Analyze, or something odd: SimpleITK's business
    shape = tuple(int(d) for d in dims[1:dims[0] + 1])
    if min(shape) <= 0:
        raise ImageReadError(path, f"its header declares a size of {' x '.join(map(str, shape))}")
    # as the NIfTI reference library (and so ITK): a slope that is 0 or not finite means "no scaling"
    slope = slope if math.isfinite(slope) and slope != 0 else 1.0
    inter = inter if math.isfinite(inter) else 0.0
    code = _NIFTI_DTYPES.get(datatype)
    return _NiftiHeader(shape=shape, dtype=np.dtype(order + code) if code else None, bytes_per_voxel=bitpix / 8,
                        vox_offset=int(vox_offset), scaled=(slope, inter) != (1.0, 0.0))


def _gunzip(path: Path, compressed: bytes, limit: int) -> bytes:
    """Decompress every member of a gzip file, checking each member's checksum and length; refuse a stream
    that ends early, corrupt data, or more than ``limit`` bytes of content."""
    parts: list[bytes] = []
    size = 0
    while compressed:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = decompressor.decompress(compressed, limit - size + 1)
        except zlib.error as error:
            reason = ("its gzip checksum does not match its content" if "check" in str(error)
                      else f"its compressed data is damaged (zlib: {error})")
            raise ImageReadError(path, f"is corrupt: {reason}") from None
        size += len(part)
        parts.append(part)
        if size > limit:
            raise ImageReadError(path, f"decompresses to more than {limit:.3g} bytes, far more than its header "
                                       "declares; it is not a plain NIfTI image")
        if not decompressor.eof:
            raise ImageReadError(path, "is truncated: its compressed data ends before the end of the gzip "
                                       "stream (an interrupted download or copy?)")
        compressed = decompressor.unused_data
        if not compressed.startswith(_GZIP_MAGIC):  # trailing padding or garbage after the last member
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_nifti_voxels(path: Path, header_voxels: int) -> tuple[np.ndarray | None, _NiftiHeader | None]:
    """The stored voxels of a NIfTI file (flat, file order, stored dtype), having checked that the file
    holds all of them; ``(None, header)`` when the datatype is left to SimpleITK, ``(None, None)`` for a file
    that is not a single-file NIfTI image."""
    with open(path, "rb") as file:
        if file.read(2) == _GZIP_MAGIC:
            file.seek(0)
            content = _gunzip(path, file.read(), header_voxels * 16 + _EXTENSION_ALLOWANCE)
            header = _parse_nifti_header(path, content[:540])
            available = len(content)
        else:
            file.seek(0)
            header = _parse_nifti_header(path, file.read(540))
            available = os.fstat(file.fileno()).st_size
            content = None
        if header is None:
            return None, None
        if header.vox_offset + header.data_bytes > available:
            held = max(available - header.vox_offset, 0)
            raise ImageReadError(path, f"is truncated: its header declares {' x '.join(map(str, header.shape))} "
                                       f"voxels ({header.data_bytes} bytes) but the file holds {held} bytes of "
                                       "voxel data")
        if header.dtype is None:
            return None, header
        if content is not None:
            return np.frombuffer(content, header.dtype, count=header.voxels, offset=header.vox_offset), header
        file.seek(header.vox_offset)
        voxels = np.fromfile(file, header.dtype, count=header.voxels)
    if voxels.size != header.voxels:  # the file shrank while being read
        raise ImageReadError(path, "is truncated: it holds fewer voxels than its header declares")
    return voxels, header


def _check_finite(path: Path, values: np.ndarray) -> None:
    """Refuse NaN and infinite values (naming how many)."""
    if values.dtype.kind != "f":
        return
    if np.isfinite(values).all():
        return
    nan = int(np.isnan(values).sum())
    infinite = int(np.isinf(values).sum())
    if nan or infinite:
        raise ImageReadError(path, f"contains {nan + infinite} NaN/Inf voxels ({nan} NaN, {infinite} Inf); "
                                   "synthUNet needs finite values",
                             hint="replace NaN/Inf (e.g. by 0 outside the brain) and save the image again")


def read_image(path: Path | str, dtype=np.float32) -> tuple[np.ndarray, Geometry]:
    """Read an image file; return the (z, y, x) array (as ``dtype``; ``None``: the stored type) and its geometry.

    Every problem is an :class:`ImageReadError` naming the file (see the module docstring for the checks).
    """
    path = Path(path)
    reader = _open_header(path)
    voxels = _check_size(path, reader)
    geometry = _geometry(reader)
    stored = None
    if path.name.lower().endswith(NIFTI_ENDINGS):
        stored, header = _read_nifti_voxels(path, voxels)
        if stored is not None:
            _check_finite(path, stored)
            itk_dtype = _SITK_DTYPES.get(reader.GetPixelID())
            if header.scaled or header.voxels != voxels or itk_dtype is None \
                    or stored.dtype.newbyteorder("=") != np.dtype(itk_dtype):
                stored = None  # values SimpleITK would convert: let it (the file is known to be whole)
    if stored is not None:
        array = stored.reshape(geometry.shape)
        array = array.astype(dtype if dtype is not None else array.dtype.newbyteorder("="), copy=False)
        if not array.flags.writeable:  # a view of the decompressed bytes
            array = array.copy()
        return array, geometry
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise ImageReadError(path, f"its voxel data cannot be read; the file is truncated or corrupt "
                                   f"({_itk_reason(error)})") from None
    array = sitk.GetArrayFromImage(image)
    _check_finite(path, array)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array, Geometry.from_image(image)


def read_geometry(path: Path | str) -> tuple[Geometry, str]:
    """Read only the header of an image: its geometry and SimpleITK pixel type name."""
    reader = _open_header(Path(path))
    return _geometry(reader), sitk.GetPixelIDValueAsString(reader.GetPixelID())


#: the names :func:`temporary_sibling` gives: ``.tmp_{8 hex digits}_{name of the file being written}``
TEMPORARY_NAME = re.compile(r"^\.tmp_[0-9a-f]{8}_(?P<name>.+)$")


def remove_stale_temporaries(targets: Iterable[Path | str] = (), folders: Iterable[Path | str] = ()) -> list[Path]:
    """Delete the leftovers of an interrupted (killed) earlier run: the :func:`temporary_sibling` files
    (``.tmp_XXXXXXXX_{name}``) of the files ``targets``, and every such file directly in ``folders``; nothing
    else. Commands call this at their start, for the files or the folder they alone write. Return the files
    removed."""
    wanted: dict[Path, set[str] | None] = {Path(folder): None for folder in folders}
    for target in map(Path, targets):
        if wanted.get(target.parent, set()) is not None:
            wanted.setdefault(target.parent, set()).add(target.name)
    removed = []
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = TEMPORARY_NAME.match(path.name)
            if match and (names is None or match.group("name") in names) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


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
