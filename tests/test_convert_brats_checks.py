"""synth_convert_brats writes only datasets that validate (issue 17, item 5): each fault on tiny 12^3 cases
gives exit code 2 and a message naming the case or file, and leaves no dataset and no .tmp_* behind."""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel
import numpy as np
import pytest

from synthunet.dataset.convert_brats import convert_brats, main as convert_main
from synthunet.dataset.image_io import read_image
from synthunet.dataset.validate import validate_dataset

SEQUENCES = ("t1n", "t1c", "t2w", "t2f", "seg")


def write_case(root: Path, case: str, seed: int, ending: str = ".nii.gz", shape=(12, 12, 12)) -> Path:
    rng = np.random.default_rng(seed)
    for suffix in SEQUENCES:
        data = rng.integers(0, 4, shape).astype(np.uint8) if suffix == "seg" else rng.random(shape).astype(np.float32)
        path = root / case / f"{case}-{suffix}{ending}"
        path.parent.mkdir(parents=True, exist_ok=True)
        nibabel.save(nibabel.Nifti1Image(data, np.diag([1.0, 1.0, 1.5, 1.0])), str(path))
    return root / case


@pytest.fixture
def brats(tmp_path, monkeypatch):
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)
    for index in range(2):
        write_case(tmp_path / "brats", f"BraTS-GLI-{index:05d}-000", index)
    return tmp_path / "brats"


def convert(brats: Path, capsys) -> tuple[int, str]:
    code = convert_main(["-i", str(brats), "-d", "12", "-n", "Checked", "-np", "1"])
    return code, capsys.readouterr().err


def assert_nothing_written(raw: Path) -> None:
    assert not raw.exists() or not list(raw.iterdir()), list(raw.iterdir())  # no dataset, no .tmp_ folder


def test_uncompressed_files_are_compressed(brats, tmp_path):
    """A .nii source, and an uncompressed file named .nii.gz, become real .nii.gz files (also when linking)."""
    write_case(brats, "BraTS-GLI-00002-000", 2, ending=".nii")
    plain = brats / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t2w.nii.gz"
    plain.write_bytes(gzip.decompress(plain.read_bytes()))
    report = convert_brats(brats, 12, "Checked", output_root=tmp_path / "raw", mode="symlink", progress=False,
                           num_processes=1)
    assert len(report.converted) == 3
    images = tmp_path / "raw" / "Dataset012_Checked" / "imagesTr"
    for converted, source in ((images / "BraTS-GLI-00000-000_0002.nii.gz", plain),
                              (images / "BraTS-GLI-00002-000_0003.nii.gz",
                               brats / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t2f.nii")):
        assert not converted.is_symlink() and converted.read_bytes()[:2] == b"\x1f\x8b"
        np.testing.assert_array_equal(read_image(converted)[0], read_image(source)[0])
    assert images.joinpath("BraTS-GLI-00001-000_0000.nii.gz").is_symlink()  # compressed files are still linked
    assert validate_dataset(images.parent, progress=False) == []


def test_bad_case_names_are_refused_naming_all(brats, tmp_path, capsys):
    write_case(brats, "BraTS GLI 00002", 2)
    write_case(brats, "BraTS#00003", 3)
    code, err = convert(brats, capsys)
    assert code == 2 and "'BraTS GLI 00002'" in err and "'BraTS#00003'" in err and "2 problem(s)" in err, err
    assert "BraTS-GLI-00000-000" not in err and "\nhint: " in err
    assert_nothing_written(tmp_path / "raw")


def test_a_sequence_given_twice_is_refused_naming_both_files(brats, tmp_path, capsys):
    case = brats / "BraTS-GLI-00001-000"
    twin = case / "BraTS-GLI-00001-000-t1c.nii"
    twin.write_bytes(gzip.decompress((case / "BraTS-GLI-00001-000-t1c.nii.gz").read_bytes()))
    code, err = convert(brats, capsys)
    assert code == 2, err
    assert f"{twin} and {case / 'BraTS-GLI-00001-000-t1c.nii.gz'} are both its t1c" in err and "ambiguous" in err, err
    assert_nothing_written(tmp_path / "raw")


@pytest.mark.parametrize("fault", ["truncated", "grid"])
def test_a_dataset_that_does_not_validate_is_not_written(brats, tmp_path, capsys, fault):
    source = brats / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2f.nii.gz"
    if fault == "truncated":
        source.write_bytes(source.read_bytes()[:-300])
    else:
        write_case(tmp_path / "other", "BraTS-GLI-00001-000", 5, shape=(12, 12, 10))
        source.write_bytes((tmp_path / "other" / "BraTS-GLI-00001-000" / source.name).read_bytes())
    code, err = convert(brats, capsys)
    assert code == 2, err
    message = err.split("\nhint: ")[0]
    assert "Dataset012_Checked does not validate" in message and "nothing was written" in message, err
    assert "case BraTS-GLI-00001-000: BraTS-GLI-00001-000_0003.nii.gz: " in message
    assert f"(from {source})" in message and ("truncated" if fault == "truncated" else "geometry") in message
    assert_nothing_written(tmp_path / "raw")
