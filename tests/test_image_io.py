"""read_image: the same arrays and geometry as SimpleITK for valid files, and an ImageReadError naming the
file for every file that would give silently wrong numbers (truncated, corrupt, NaN/Inf, huge header)."""
from __future__ import annotations

import gzip
import pickle

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from synthunet.dataset.image_io import Geometry, ImageReadError, read_geometry, read_image, write_image

SHAPE = (7, 9, 11)  # z, y, x
_c, _s = np.cos(0.4), np.sin(0.4)
GEOMETRY = Geometry(itk_spacing=(0.9, 1.1, 3.0), itk_origin=(-10.0, 20.5, 3.25),
                    itk_direction=(_c, -_s, 0.0, _s, _c, 0.0, 0.0, 0.0, 1.0), shape=SHAPE)


def volume(dtype=np.float32, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).uniform(-50, 200, SHAPE)
    return values.astype(dtype) if np.dtype(dtype).kind == "f" else np.abs(values).astype(dtype)


def sitk_read(path) -> tuple[np.ndarray, Geometry]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), Geometry.from_image(image)


def assert_same_as_sitk(path) -> None:
    expected, expected_geometry = sitk_read(path)
    array, geometry = read_image(path, dtype=None)
    assert array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)
    assert geometry == expected_geometry
    assert array.flags.writeable and array.flags.c_contiguous
    as_float, _ = read_image(path)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, expected.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_valid_files_read_as_simpleitk_reads_them(tmp_path, dtype, ending):
    path = tmp_path / f"image{ending}"
    write_image(volume(dtype), GEOMETRY, path)
    assert_same_as_sitk(path)


@pytest.mark.parametrize("variant", ["nibabel_default", "big_endian", "scaled_int16", "scaled_float", "slope_zero",
                                     "nifti2", "four_d_single_volume", "extension", "sform_only"])
@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_nifti_variants_read_as_simpleitk_reads_them(tmp_path, variant, ending):
    """Headers written by other tools: scaling, byte order, NIfTI-2, a trailing unit dimension, extensions."""
    data = volume(np.int16 if variant == "scaled_int16" else np.float32).transpose(2, 1, 0)  # nibabel: (i, j, k)
    affine = np.array([[0.0, -1.1, 0.0, 5.0], [0.9, 0.0, 0.0, -3.0], [0.0, 0.0, 3.0, 7.5], [0, 0, 0, 1]])
    kind = nibabel.Nifti2Image if variant == "nifti2" else nibabel.Nifti1Image
    if variant == "four_d_single_volume":
        data = data[..., None]
    image = kind(data, affine)
    if variant == "big_endian":
        image = kind(data, affine, kind.header_class(endianness=">"))
    if variant in ("scaled_int16", "scaled_float"):
        image.header.set_slope_inter(0.5, 3.0)
    if variant == "slope_zero":
        image.header["scl_slope"], image.header["scl_inter"] = 0.0, 0.0
    if variant == "extension":
        image.header.extensions.append(nibabel.nifti1.Nifti1Extension("comment", b"synthUNet test " * 40))
    if variant == "sform_only":
        image.set_qform(None, code=0)
        image.set_sform(affine, code=2)
    path = tmp_path / f"image{ending}"
    nibabel.save(image, str(path))
    if variant == "nifti2":  # SimpleITK does not read NIfTI-2: a clear error, not a crash
        with pytest.raises(ImageReadError, match="cannot be read as an image"):
            read_image(path)
        return
    if variant == "big_endian":
        content = path.read_bytes()
        assert (gzip.decompress(content) if ending == ".nii.gz" else content)[:4] == (348).to_bytes(4, "big")
    assert_same_as_sitk(path)


def test_uncompressed_file_named_nii_gz_is_read(tmp_path):
    """Compression is recognised by content: an uncompressed NIfTI named .nii.gz reads like a .nii (as SimpleITK)."""
    write_image(volume(), GEOMETRY, tmp_path / "plain.nii", compress=False)
    (tmp_path / "plain.nii").rename(tmp_path / "plain.nii.gz")
    assert_same_as_sitk(tmp_path / "plain.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "plain.nii.gz")[0], volume())


def write_fault(tmp_path, fault: str, ending: str = ".nii.gz"):
    """Create one faulty file; return its path and a phrase its error message must contain."""
    path = tmp_path / f"case_0000{ending}"
    if fault == "crc":  # flip one byte of the gzip trailer's checksum (an image larger than SimpleITK's first read)
        noise = np.random.default_rng(1).normal(size=(64, 64, 64)).astype(np.float32)
        write_image(noise, Geometry((1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1), noise.shape), path)
        content = path.read_bytes()
        path.write_bytes(content[:-8] + bytes([content[-8] ^ 0xFF]) + content[-7:])
        return path, "checksum"
    if fault == "trailer_cut":  # every voxel is there, but the gzip stream lacks its end (checksum and length)
        write_image(volume(), GEOMETRY, path)
        path.write_bytes(path.read_bytes()[:-6])
        return path, "ends before the end of the gzip stream"
    if fault == "gzipped_short_nifti":  # a whole gzip stream of a NIfTI file that was truncated before compression
        plain = tmp_path / "plain.nii"
        write_image(volume(), GEOMETRY, plain, compress=False)
        path.write_bytes(gzip.compress(plain.read_bytes()[:-500]))
        return path, "file holds"
    if fault in ("truncated", "truncated_uncompressed"):
        write_image(volume(), GEOMETRY, path, compress=fault != "truncated_uncompressed")
        content = path.read_bytes()
        path.write_bytes(content[: len(content) * 2 // 3])
        return path, "truncated"
    if fault in ("nan", "inf"):
        array = volume()
        array[3, 4, 5] = np.nan if fault == "nan" else -np.inf
        write_image(array, GEOMETRY, path)
        return path, "NaN/Inf"
    if fault == "huge":  # a header claiming 2000^3 float32 voxels, and a few bytes of data
        header = nibabel.Nifti1Header()
        header.set_data_shape((2000, 2000, 2000))
        header.set_data_dtype(np.float32)
        header.set_data_offset(352)
        content = header.binaryblock + b"\0" * 4 + b"\0" * 4096
        path.write_bytes(gzip.compress(content) if ending.endswith(".gz") else content)
        return path, "2000 x 2000 x 2000 = 8e+09 voxels, more than synthUNet reads"
    if fault == "empty":
        path.write_bytes(b"")
        return path, "empty"
    if fault == "not_an_image":
        path.write_bytes(gzip.compress(b"hello, this is text and not an image\n" * 50))
        return path, "cannot be read as an image"
    if fault == "missing":
        return path, "does not exist"
    raise AssertionError(fault)


FAULTS = ["truncated", "truncated_uncompressed", "trailer_cut", "gzipped_short_nifti", "crc", "nan", "inf", "huge", "empty", "not_an_image", "missing"]


@pytest.mark.parametrize("fault", FAULTS)
def test_faulty_files_raise_naming_the_file(tmp_path, fault):
    path, phrase = write_fault(tmp_path, fault)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and phrase in str(caught.value), str(caught.value)
    assert caught.value.path == path and caught.value.hint
    assert isinstance(caught.value, ValueError)  # code catching ValueError keeps working
    again = pickle.loads(pickle.dumps(caught.value))  # errors travel back from worker processes
    assert str(again) == str(caught.value) and again.hint == caught.value.hint


@pytest.mark.parametrize("ending", [".nii", ".mha", ".nrrd"])
def test_other_formats_refuse_truncation_and_nan(tmp_path, ending):
    path = tmp_path / f"image{ending}"
    write_image(volume(), GEOMETRY, path, compress=False)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) - 1000])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)
    array = volume()
    array[0, 0, 0] = np.nan
    write_image(array, GEOMETRY, path)
    with pytest.raises(ImageReadError, match="1 NaN"):
        read_image(path)


def test_huge_header_is_refused_before_allocating(tmp_path, monkeypatch):
    path, _ = write_fault(tmp_path, "huge", ".nii")
    with pytest.raises(ImageReadError, match="SYNTHUNET_MAX_IMAGE_VOXELS|more than synthUNet reads") as caught:
        read_image(path)
    assert "SYNTHUNET_MAX_IMAGE_VOXELS" in caught.value.hint
    # the limit is adjustable; a file smaller than its (allowed) header is then truncated, not zero-filled
    write_image(volume(), GEOMETRY, tmp_path / "small.nii.gz")
    monkeypatch.setenv("SYNTHUNET_MAX_IMAGE_VOXELS", "100")
    with pytest.raises(ImageReadError, match="more than synthUNet reads"):
        read_image(tmp_path / "small.nii.gz")
    monkeypatch.setenv("SYNTHUNET_MAX_IMAGE_VOXELS", str(2001 ** 3))
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_read_geometry_names_the_file(tmp_path):
    path, _ = write_fault(tmp_path, "empty")
    with pytest.raises(ImageReadError, match="empty"):
        read_geometry(path)
    write_image(volume(), GEOMETRY, tmp_path / "ok.nii.gz")
    geometry, pixel_type = read_geometry(tmp_path / "ok.nii.gz")
    assert not geometry.differences(GEOMETRY, 1e-6) and pixel_type == "32-bit float"
