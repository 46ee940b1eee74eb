"""Super-resolution as a synthesis task: a raw dataset whose input channel is a degraded copy of one sequence.

``make_sr_dataset(501, 502, "T2F", Degradation(factor=4, axis="z"))`` writes ``Dataset502_{name}`` with the
channels ``{"0": "T2F_LR", "1": "T2F"}`` (input: degraded, target: the original file), ``labelsTr`` and
``masksTr`` of the source. The degradation, per case (documentation/super_resolution.md):

1. low resolution along one voxel axis (``x``, ``y``, ``z`` = the image's index axes i, j, k, i.e. array axes
   2, 1, 0 of the ``(z, y, x)`` arrays; *not* world axes): ``thick`` averages each block of ``factor``
   consecutive slices (thick slices), ``kspace`` keeps the ``n // factor`` lowest frequencies of the FFT along
   the axis (angular frequency <= pi / factor) and samples the band-limited signal at ``n // factor`` points;
2. Gaussian noise of standard deviation ``noise x`` the 99th percentile inside the brain, on the low-resolution
   samples;
3. cubic B-spline interpolation (``scipy.ndimage.affine_transform``, order 3) back onto the original grid, so
   every channel of a case shares one geometry; then 0 outside the brain, as in the source.
"""
from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import affine_transform

from synthunet import paths
from synthunet.dataset.brain_mask import brain_mask
from synthunet.dataset.dataset_json import image_file_name, load_dataset_json
from synthunet.dataset.identifiers import (DATASET_NAME_PATTERN, dataset_name, raw_dataset_folder,
                                          resolve_dataset_name)
from synthunet.dataset.image_io import Geometry, read_geometry, read_image, write_image
from synthunet.dataset.raw_cases import list_raw_cases
from synthunet.errors import InputError
from synthunet.utilities.parallel import run_parallel

#: axis name -> array axis of the (z, y, x) arrays (= SimpleITK / NIfTI voxel index axis k, j, i)
AXES = {"z": 0, "y": 1, "x": 2}
MODES = ("thick", "kspace")
LOW_RESOLUTION_SUFFIX = "_LR"
#: spline boundary per mode: thick slices extend the edge, the DFT of kspace is periodic
SPLINE_MODES = {"thick": "nearest", "kspace": "grid-wrap"}
SPLINE_ORDER = 3


@dataclass(frozen=True)
class Degradation:
    """How the low-resolution channel is made; ``noise`` is a fraction of the brain's 99th percentile."""

    factor: int = 4
    axis: str = "z"
    mode: str = "thick"
    noise: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or int(self.factor) != self.factor or self.factor < 2:
            raise InputError(f"The super-resolution factor must be an integer >= 2, got {self.factor}")
        if self.axis not in AXES:
            raise InputError(f"axis must be one of {', '.join(AXES)} (voxel axes), got {self.axis!r}")
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not np.isfinite(self.noise) or self.noise < 0:
            raise InputError(f"noise must be a non-negative fraction of the brain's 99th percentile, got {self.noise}")

    @property
    def array_axis(self) -> int:
        """The axis of the (z, y, x) arrays that is degraded."""
        return AXES[self.axis]

    def to_dict(self) -> dict:
        return {**asdict(self), "array_axis": self.array_axis,
                "interpolation": f"cubic B-spline (scipy.ndimage, order {SPLINE_ORDER}, "
                                 f"boundary {SPLINE_MODES[self.mode]})"}


@dataclass(frozen=True)
class LowResolution:
    """Low-resolution samples along ``axis`` at continuous high-resolution indices ``first + j * step``."""

    samples: np.ndarray
    axis: int
    first: float
    step: float


def thick_slices(volume: np.ndarray, factor: int, axis: int) -> LowResolution:
    """Mean of each block of ``factor`` consecutive slices along ``axis``.

    ``n // factor`` blocks, centred: the ``n % factor`` slices left over are split between both ends
    (``(n % factor) // 2`` before the first block). Block ``j`` lies at index ``o + j f + (f - 1) / 2``.
    """
    n = volume.shape[axis]
    _check_length(n, factor)
    count, offset = n // factor, (n % factor) // 2
    moved = np.moveaxis(np.asarray(volume, dtype=np.float64), axis, 0)[offset:offset + count * factor]
    blocks = moved.reshape(count, factor, *moved.shape[1:]).mean(axis=1)
    return LowResolution(np.moveaxis(blocks, 0, axis), axis, offset + (factor - 1) / 2.0, float(factor))


def kspace_truncation(volume: np.ndarray, factor: int, axis: int) -> LowResolution:
    """Keep the ``m = n // factor`` lowest frequencies of the FFT along ``axis`` and sample the band-limited
    signal at ``m`` points ``j n / m`` (the inverse DFT of the kept coefficients; real part).

    Kept: integer frequencies ``-(m // 2) .. m - m // 2 - 1`` (cycles per ``n`` voxels), i.e. angular
    frequencies ``|omega| <= pi / factor``."""
    n = volume.shape[axis]
    _check_length(n, factor)
    m = n // factor
    spectrum = np.fft.fft(np.asarray(volume, dtype=np.float64), axis=axis)
    kept = np.round(np.fft.fftfreq(m, d=1.0 / m)).astype(int)  # m's FFT order: 0, 1, ..., -1
    samples = np.fft.ifft(np.take(spectrum, kept % n, axis=axis), axis=axis).real * (m / n)
    return LowResolution(samples, axis, 0.0, n / m)


def _check_length(n: int, factor: int) -> None:
    if n < factor:
        raise InputError(f"the degraded axis has {n} voxels, fewer than the factor {factor}")


LOW_RESOLUTION = {"thick": thick_slices, "kspace": kspace_truncation}


def to_high_resolution_grid(low: LowResolution, length: int, mode: str = "nearest") -> np.ndarray:
    """Cubic B-spline interpolation of the samples at every high-resolution index ``0 .. length - 1`` of the
    axis (``scipy.ndimage.affine_transform``, order 3; the other axes are sampled at their own grid points,
    where the interpolating spline returns the values unchanged)."""
    samples = low.samples
    matrix = np.ones(samples.ndim)
    matrix[low.axis] = 1.0 / low.step
    offset = np.zeros(samples.ndim)
    offset[low.axis] = -low.first / low.step
    shape = list(samples.shape)
    shape[low.axis] = int(length)
    return affine_transform(samples, matrix, offset, output_shape=tuple(shape), order=SPLINE_ORDER, mode=mode,
                            prefilter=True)


def noise_sigma(volume: np.ndarray, brain: np.ndarray | None, noise: float) -> float:
    """``noise x`` the 99th percentile of the volume inside the brain (every voxel when ``brain`` is None)."""
    values = volume[brain] if brain is not None else volume.ravel()
    if values.size == 0:
        raise InputError("the brain mask is empty, so the noise level (a fraction of the brain's 99th "
                         "percentile) is undefined")
    return float(noise) * float(np.percentile(values, 99))


@dataclass(frozen=True)
class DegradedVolume:
    """The degraded volume on the original grid (float32), its low-resolution samples and the noise sigma."""

    high_resolution_grid: np.ndarray
    low_resolution: LowResolution
    sigma: float


def degrade(volume: np.ndarray, degradation: Degradation, brain: np.ndarray | None = None,
            rng: np.random.Generator | None = None) -> DegradedVolume:
    """Low resolution along the axis, noise on the low-resolution samples, cubic B-spline interpolation back to
    ``volume``'s grid, 0 outside ``brain`` (when given)."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) volume, got shape {volume.shape}")
    axis = degradation.array_axis
    low = LOW_RESOLUTION[degradation.mode](volume, degradation.factor, axis)
    sigma = noise_sigma(volume, brain, degradation.noise) if degradation.noise > 0 else 0.0
    if sigma > 0:
        rng = rng if rng is not None else np.random.default_rng(degradation.seed)
        low = LowResolution(low.samples + rng.normal(0.0, sigma, size=low.samples.shape), low.axis, low.first,
                            low.step)
    result = to_high_resolution_grid(low, volume.shape[axis], SPLINE_MODES[degradation.mode])
    if brain is not None:
        result[~brain] = 0
    return DegradedVolume(result.astype(np.float32), low, sigma)


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """A generator for one case that depends on the seed and the case id only (not on -np or the order)."""
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode())])


def world_direction(geometry: Geometry, axis: str) -> tuple[float, ...]:
    """The world (LPS, SimpleITK) unit vector of voxel axis ``axis`` (x = i, y = j, z = k) of an image."""
    column = {"x": 0, "y": 1, "z": 2}[axis]
    direction = np.asarray(geometry.itk_direction, dtype=float).reshape(3, 3)
    return tuple(round(float(v), 4) + 0.0 for v in direction[:, column])  # + 0.0: no "-0.0"


# ------------------------------------------------------------------------------------------------ dataset


@dataclass(frozen=True)
class CaseTask:
    """Everything one worker needs for one case (picklable)."""

    case_id: str
    images: dict[int, Path]
    label: Path | None
    mask: Path | None
    channel: int
    staging: Path
    file_ending: str
    degradation: Degradation


def degrade_case(task: CaseTask) -> dict:
    """Write ``{case}_0000`` (degraded), ``{case}_0001`` (the source file), the label and the brain mask of one
    case into the staging folder; return the case's noise sigma."""
    source = task.images[task.channel]
    volume, geometry = read_image(source, dtype=np.float32)
    if task.mask is not None:
        mask, _ = read_image(task.mask, dtype=None)
        brain = brain_mask([volume], mask)
    else:  # the rule of documentation/architecture.md: union of every channel's non-zero voxels, holes filled
        images = [volume if c == task.channel else read_image(p, dtype=np.float32)[0] for c, p in task.images.items()]
        brain = brain_mask(images)
    degraded = degrade(volume, task.degradation, brain, case_rng(task.degradation.seed, task.case_id))
    images = task.staging / "imagesTr"
    write_image(degraded.high_resolution_grid, geometry, images / image_file_name(task.case_id, 0, task.file_ending))
    shutil.copy2(source, images / image_file_name(task.case_id, 1, task.file_ending))
    if task.label is not None:
        shutil.copy2(task.label, task.staging / "labelsTr" / task.label.name)
    mask_path = task.staging / "masksTr" / f"{task.case_id}{task.file_ending}"
    if task.mask is not None:
        shutil.copy2(task.mask, mask_path)
    else:  # written so that the new dataset's brain is the source's, not that of its two channels
        write_image(brain.astype(np.uint8), geometry, mask_path)
    return {"case": task.case_id, "sigma": degraded.sigma}


@dataclass
class SuperResolutionReport:
    """What :func:`make_sr_dataset` wrote."""

    output_folder: Path
    source: str
    sequence: str
    cases: list[str]
    axis_world_direction: tuple[float, ...]
    replaced: list[Path]


def _sequence_channel(description, sequence: str, source: str) -> tuple[int, str]:
    try:
        index = description.channel_index(sequence)
    except KeyError:
        raise InputError(f"Sequence {sequence!r} is not a channel of {source}; its channels are "
                         f"{', '.join(description.channels)}") from None
    return index, description.channel_names[index]


def _check_cases(folder: Path, cases: list, channel: int, sequence: str, ending: str,
                 degradation: Degradation) -> None:
    """Every case has the sequence as a 3D image at least ``factor`` voxels long on the axis (headers only)."""
    problems = []
    for case in cases:
        if channel not in case.images:
            problems.append(f"case {case.case_id}: no {sequence} file {image_file_name(case.case_id, channel, ending)}")
            continue
        shape = read_geometry(case.images[channel])[0].shape
        if len(shape) != 3:
            problems.append(f"case {case.case_id}: {case.images[channel].name} is {len(shape)}D, not 3D")
        elif shape[degradation.array_axis] < degradation.factor:
            problems.append(f"case {case.case_id}: axis {degradation.axis} has {shape[degradation.array_axis]} voxels "
                            f"(shape z, y, x = {shape}), fewer than the factor {degradation.factor}")
    if problems:
        raise InputError(f"{folder} cannot be degraded ({len(problems)} problem(s)):\n  - " + "\n  - ".join(problems))


def make_sr_dataset(source: str | int, target_id: int, sequence: str, degradation: Degradation,
                    name: str | None = None, overwrite: bool = False, num_processes: int = 1, progress: bool = True,
                    validate: bool = True) -> SuperResolutionReport:
    """Write ``$synthUNet_raw/Dataset{target_id}_{name}`` from raw dataset ``source`` (see the module docstring).

    The dataset is assembled in a hidden sibling folder, checked with the dataset validator (``validate``) and
    renamed at the end, so a failed or killed run leaves no half-written dataset behind. An existing dataset
    with ``target_id`` is an error unless ``overwrite``.
    """
    source_name = resolve_dataset_name(source)
    source_folder = raw_dataset_folder(source_name)
    description = load_dataset_json(source_folder / "dataset.json")
    channel, sequence = _sequence_channel(description, sequence, source_name)
    source_id, short_name = DATASET_NAME_PATTERN.match(source_name).groups()
    if int(target_id) == int(source_id):
        raise InputError(f"The super-resolution dataset needs an id other than the source's ({source_id})")
    name = name or f"{short_name}_SR_{sequence}_x{degradation.factor}{degradation.axis}"
    target_name = dataset_name(int(target_id), name)
    raw_root = paths.raw_folder()
    existing = sorted(raw_root.glob(f"Dataset{int(target_id):03d}_*"))
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; pass --overwrite to replace it (or choose another -o)")
    cases = list_raw_cases(source_folder, description)
    _check_cases(source_folder, cases, channel, sequence, description.file_ending, degradation)
    direction = world_direction(read_geometry(cases[0].images[channel])[0], degradation.axis)
    staging = raw_root / f".tmp_{target_name}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        sigmas = _write_staging(staging, cases, channel, description, degradation, num_processes, progress)
        _write_dataset_json(staging, source_name, sequence, name, description, degradation, direction, sigmas)
        if validate:
            from synthunet.dataset.validate import raise_if_invalid
            raise_if_invalid(staging, num_processes, progress)
        for old in existing:
            shutil.rmtree(old)
        os.replace(staging, raw_root / target_name)
    finally:
        if staging.exists():  # failed or interrupted: leave nothing half-written
            shutil.rmtree(staging, ignore_errors=True)
    return SuperResolutionReport(raw_root / target_name, source_name, sequence, sorted(sigmas), direction, existing)


def _write_staging(staging: Path, cases: list, channel: int, description, degradation: Degradation,
                   num_processes: int, progress: bool) -> dict[str, float]:
    """Degrade every case into ``staging``; return the noise sigma per case."""
    for sub in ("imagesTr", "masksTr") + (("labelsTr",) if any(c.label for c in cases) else ()):
        (staging / sub).mkdir(parents=True)
    tasks = [CaseTask(c.case_id, dict(c.images), c.label, c.mask, channel, staging, description.file_ending,
                      degradation) for c in cases]
    results = run_parallel(degrade_case, tasks, num_processes, progress, "degrading", name=lambda task: task.case_id)
    return {r["case"]: r["sigma"] for r in results}


def _write_dataset_json(staging: Path, source_name: str, sequence: str, name: str, description,
                        degradation: Degradation, direction: tuple[float, ...], sigmas: dict[str, float]) -> None:
    """The new dataset.json: two channels, the source's labels, and how the input channel was made."""
    content = {"channel_names": {"0": f"{sequence}{LOW_RESOLUTION_SUFFIX}", "1": sequence},
               "numTraining": len(sigmas), "file_ending": description.file_ending, "name": name,
               "description": f"{sequence} super-resolution from {source_name}: channel 0 is {sequence} degraded "
                              f"x{degradation.factor} along voxel axis {degradation.axis} ({degradation.mode}) and "
                              f"interpolated back onto the original grid, channel 1 the original "
                              f"(synth_make_sr_dataset; documentation/super_resolution.md)",
               "super_resolution": {"source": source_name, "sequence": sequence, **degradation.to_dict(),
                                    "axis_world_direction_first_case": list(direction),
                                    "noise_sigma_per_case": {k: round(v, 6) for k, v in sorted(sigmas.items())}}}
    if (staging / "labelsTr").is_dir():
        content.update(description.labels_json())  # labels (and regions_class_order), as the source declares them
    (staging / "dataset.json").write_text(json.dumps(content, indent=2))
