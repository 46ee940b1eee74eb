"""The dataset validator lists every problem of every case in one pass (issue 17, item 3).

Each fault is put into TWO cases of a tiny dataset (12^3 NIfTI files written with nibabel) next to good
cases; one call of the validator must list every problem, each naming its case and file, and never raise.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pytest

from test_bad_input import damage as damage_image

from synthunet.dataset.validate import DatasetValidationError, main as validate_main, raise_if_invalid, validate_dataset
from synthunet.evaluation.ssim import window_size

CHANNELS = ("T1N", "T1C")
SIZE = 12  # voxels per axis: just above the 11-voxel SSIM window
SMALL = (SIZE, SIZE, 6)  # nibabel order (x, y, z): 6 slices along z, below the window
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])

#: fault -> phrases its problem must contain ({file}: the damaged file's name)
FAULTS = {
    "truncated": ("{file}", "truncated"),
    "uncompressed": ("{file}", "not gzip-compressed"),
    "huge": ("{file}", "2000 x 2000 x 2000", "more than synthUNet reads"),
    "nan": ("{file}", "NaN"),
    "zero_channel": ("{file}", "channel 0001 (T1C) is all zero"),
    "empty_mask": ("{file}", "brain mask is empty"),
    "too_small": ("shape (6, 12, 12)", "11-voxel SSIM window", "z=6"),
}


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(array, AFFINE), str(path))
    return path


def write_case(folder: Path, case: str, rng: np.random.Generator, shape=(SIZE,) * 3, with_mask: bool = True) -> None:
    """A good case: two positive channels inside a cubic 'brain', its mask (uint8)."""
    brain = np.zeros(shape, np.uint8)
    brain[2:-2, 2:-2, 1:-1] = 1
    for channel in range(len(CHANNELS)):
        image = (100 + 100 * rng.random(shape)).astype(np.float32) * brain
        save(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image)
    if with_mask:
        save(folder / "masksTr" / f"{case}.nii.gz", brain)


def write_dataset_json(folder: Path, n_cases: int) -> None:
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): name for i, name in enumerate(CHANNELS)}, "file_ending": ".nii.gz",
        "numTraining": n_cases}))


def damage(folder: Path, case: str, fault: str, rng: np.random.Generator) -> str:
    """Put ``fault`` into ``case`` (written good before); return the name of the damaged file."""
    image = folder / "imagesTr" / f"{case}_0001.nii.gz"
    if fault in ("truncated", "uncompressed", "huge", "nan"):  # the damaged files of the bad-input tests
        damage_image(image, fault)
    elif fault == "zero_channel":
        save(image, np.zeros((SIZE,) * 3, np.float32))
    elif fault == "empty_mask":
        return save(folder / "masksTr" / f"{case}.nii.gz", np.zeros((SIZE,) * 3, np.uint8)).name
    elif fault == "too_small":
        for path in [*folder.glob(f"imagesTr/{case}_*"), folder / "masksTr" / f"{case}.nii.gz"]:
            path.unlink()
        write_case(folder, case, rng, shape=SMALL)
        return ""
    else:
        raise AssertionError(fault)
    return image.name


def problems_of(problems: list[str], case: str) -> list[str]:
    return [p for p in problems if p.startswith(f"case {case}:")]


@pytest.fixture
def faulty_dataset(tmp_path) -> tuple[Path, dict[str, tuple[str, ...]], list[str]]:
    """Every fault of FAULTS in two cases, and three good cases; return the folder, each faulty case's
    expected phrases and the good cases."""
    folder = tmp_path / "Dataset990_Faults"
    rng = np.random.default_rng(0)
    expected: dict[str, tuple[str, ...]] = {}
    good = ["good_a", "good_b", "good_c"]
    for case in good:
        write_case(folder, case, rng)
    for fault, phrases in FAULTS.items():
        for copy in (1, 2):
            case = f"{fault}_{copy}"
            write_case(folder, case, rng)
            file = damage(folder, case, fault, rng)
            expected[case] = tuple(p.format(file=file) for p in phrases)
    write_dataset_json(folder, len(good) + len(expected))
    return folder, expected, good


def assert_every_fault_listed(problems: list[str], expected: dict[str, tuple[str, ...]], good: list[str]) -> None:
    for case, phrases in expected.items():
        found = problems_of(problems, case)
        assert len(found) == 1 and all(p in found[0] for p in phrases), (case, phrases, problems)
    for case in good:
        assert problems_of(problems, case) == [], problems
    assert len(problems) == len(expected), problems


def test_one_call_lists_every_problem_of_every_case(faulty_dataset):
    folder, expected, good = faulty_dataset
    assert_every_fault_listed(validate_dataset(folder, progress=False), expected, good)


def test_worker_processes_list_the_same_problems(faulty_dataset):
    folder, expected, good = faulty_dataset
    problems = validate_dataset(folder, num_processes=2, progress=False)
    assert problems == validate_dataset(folder, progress=False)
    assert_every_fault_listed(problems, expected, good)


def test_planning_and_the_command_report_them_all(faulty_dataset, capsys):
    folder, expected, _ = faulty_dataset
    with pytest.raises(DatasetValidationError) as raised:
        raise_if_invalid(folder, progress=False)
    message = str(raised.value)
    assert f"({len(expected)} problem(s))" in message and all(f"case {case}:" in message for case in expected)
    assert validate_main(["-d", str(folder), "-np", "1"]) == 1
    err = capsys.readouterr().err
    assert all(f"case {case}:" in err for case in expected) and "Traceback" not in err


def test_empty_brain_without_masks(tmp_path):
    """Without masksTr the brain is the non-zero voxels: two cases whose channels are all zero have none."""
    folder = tmp_path / "Dataset991_NoMask"
    rng = np.random.default_rng(1)
    for case in ("good_a", "empty_1", "good_b", "empty_2"):
        write_case(folder, case, rng, with_mask=False)
    for case in ("empty_1", "empty_2"):
        for channel in range(len(CHANNELS)):
            save(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz", np.zeros((SIZE,) * 3, np.float32))
    write_dataset_json(folder, 4)
    problems = validate_dataset(folder, progress=False)
    for case in ("empty_1", "empty_2"):
        found = problems_of(problems, case)
        assert len(found) == 3 and any("the brain is empty" in p and "no brain mask" in p for p in found), problems
        assert all(any(f"channel {c:04d} ({n}) is all zero" in p for p in found) for c, n in enumerate(CHANNELS))
    assert problems_of(problems, "good_a") == problems_of(problems, "good_b") == []


def test_size_limit_is_the_evaluation_ssim_window():
    assert window_size() == 11


def test_validation_size_limit_equals_the_ssim_window():
    from synthunet.dataset.validate import MIN_EDGE

    assert MIN_EDGE == window_size()
