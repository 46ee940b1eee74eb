"""Finding and pairing reference, prediction, label and mask files (raw and BraTS layouts).

Accepted file names (any ending of ``SUPPORTED_FILE_ENDINGS``, ``.nii.gz`` being the usual one):

* raw format: ``{case}_{XXXX}.nii.gz`` (XXXX = channel index; dataset.json maps it to a name, otherwise
  the name is the index itself, e.g. ``"1"``);
* BraTS format: ``{case}-{t1n,t1c,t2w,t2f}.nii.gz`` (names ``T1N``, ``T1C``, ``T2W``, ``T2F``) and
  ``{case}-seg.nii.gz``, either flat in the folder (as BraSyn predictions are written) or in case
  sub-folders ``{case}/{case}-t1n.nii.gz`` (as BraTS distributes data);
* bare ``{case}.nii.gz``: raw labels / masks; a prediction (or reference) named like this is the channel
  given by ``target``.

Reference and prediction are paired by case id and channel name (case-insensitive), so raw predictions
can be scored against BraTS references when dataset.json names the channels like BraTS does.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from synthunet.dataset.brats_layout import BRATS_SEQUENCES
from synthunet.dataset.dataset_json import SUPPORTED_FILE_ENDINGS, load_dataset_json
from synthunet.dataset.label_scheme import LabelScheme, brats_2023_scheme
from synthunet.evaluation.metrics import EvaluationError

BRATS_CHANNEL_INDEX = {name: index for index, name in enumerate(BRATS_SEQUENCES.values())}
_BRATS_PATTERN = re.compile(rf"^(?P<case>.+)-(?P<kind>{'|'.join(BRATS_SEQUENCES)}|seg)$", re.IGNORECASE)
_RAW_PATTERN = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})$")
_MAX_LISTED = 10


@dataclass(frozen=True)
class ImageFile:
    """One image file found in a folder."""

    path: Path
    stem: str  # file name without its ending
    ending: str


@dataclass
class CaseFiles:
    """Everything known about one case and one target sequence."""

    case: str
    target: str
    reference: Path
    prediction: Path
    labels: Path | None = None
    mask: Path | None = None
    channels: dict[str, Path] = field(default_factory=dict)  # every reference channel of the case, target included
    channel_indices: dict[str, int] = field(default_factory=dict)  # channel name -> raw channel index
    file_ending: str = ".nii.gz"

    @property
    def inputs(self) -> dict[str, Path]:
        """The reference channels other than the target (what a synthesis model gets as input)."""
        return {name: path for name, path in self.channels.items() if name != self.target}


def file_ending_of(name: str) -> str | None:
    """The supported image ending of a file name (longest match first), or None."""
    for ending in sorted(SUPPORTED_FILE_ENDINGS, key=len, reverse=True):
        if name.lower().endswith(ending):
            return name[len(name) - len(ending):]
    return None


def list_image_files(folder: Path | str) -> list[ImageFile]:
    """Image files in ``folder`` and in its direct sub-folders (BraTS case folders); hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"Folder {folder} does not exist")
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.name.startswith(".") or not candidate.is_file():
                continue
            ending = file_ending_of(candidate.name)
            if ending is None:
                continue
            found.append(ImageFile(candidate, candidate.name[: -len(ending)], ending))
    return found


def channel_names_from(dataset_json: Path | str | None = None, dataset: str | int | None = None) -> dict[int, str]:
    """Channel index -> name from a dataset.json path or a dataset id/name (``-d 501``); {} when neither."""
    if dataset_json is None and dataset is None:
        return {}
    if dataset_json is None:
        from synthunet.dataset.identifiers import raw_dataset_folder

        dataset_json = raw_dataset_folder(dataset) / "dataset.json"
    return dict(load_dataset_json(Path(dataset_json)).channel_names)


def label_scheme_from(dataset_json: Path | str | None = None, dataset: str | int | None = None) -> LabelScheme:
    """The tumour labels and BraTS regions of a dataset.json path or a dataset id/name
    (:mod:`synthunet.dataset.label_scheme`); the BraTS 2023 numbering when neither is given or it declares no
    labels."""
    if dataset_json is None and dataset is None:
        return brats_2023_scheme("the BraTS 2023 default labels (1 NCR, 2 ED, 3 ET; no dataset.json given)")
    if dataset_json is None:
        from synthunet.dataset.identifiers import raw_dataset_folder

        dataset_json = raw_dataset_folder(dataset) / "dataset.json"
    path = Path(dataset_json)
    return load_dataset_json(path).label_scheme(str(path / "dataset.json" if path.is_dir() else path))


def label_names_from(dataset_json: Path | str | None = None, dataset: str | int | None = None) -> dict[int, str]:
    """Label value -> report name (without background), in report order; {} when no dataset.json is given."""
    if dataset_json is None and dataset is None:
        return {}
    return dict(label_scheme_from(dataset_json, dataset).names)


@dataclass
class FolderImages:
    """Images of a folder sorted by case and channel name."""

    images: dict[str, dict[str, Path]] = field(default_factory=dict)  # case -> NAME -> path
    segmentations: dict[str, Path] = field(default_factory=dict)      # case -> BraTS -seg file
    bare: dict[str, Path] = field(default_factory=dict)               # stem -> path ({case}.ext files)
    indices: dict[str, int] = field(default_factory=dict)             # NAME -> raw channel index
    endings: dict[str, str] = field(default_factory=dict)             # case -> file ending


def _name_for_index(index: int, channel_names: dict[int, str]) -> str:
    return channel_names.get(index, str(index)).upper()


def read_folder(folder: Path | str, channel_names: dict[int, str] | None = None,
                known_cases: set[str] | None = None) -> FolderImages:
    """Sort the images of a folder by case and channel (see the module docstring for the names).

    ``known_cases`` (the reference's cases) settles ``{case}_{XXXX}`` versus a bare case id that happens to end
    in ``_dddd``: a raw parse is kept only when its case is known (or when no cases are known yet).
    """
    channel_names = channel_names or {}
    result = FolderImages()
    duplicates = []
    for image in list_image_files(folder):
        brats = _BRATS_PATTERN.match(image.stem)
        raw = _RAW_PATTERN.match(image.stem)
        if brats:
            case, kind = brats.group("case"), brats.group("kind").lower()
            if kind == "seg":
                result.segmentations[case] = image.path
                continue
            name = kind.upper()
            result.indices.setdefault(name, BRATS_CHANNEL_INDEX[name])
        elif raw and (known_cases is None or raw.group("case") in known_cases or image.stem not in known_cases):
            case, index = raw.group("case"), int(raw.group("index"))
            name = _name_for_index(index, channel_names)
            result.indices.setdefault(name, index)
        else:
            result.bare[image.stem] = image.path
            continue
        channels = result.images.setdefault(case, {})
        if name in channels:
            duplicates.append(f"{channels[name].name} and {image.path.name}")
        channels[name] = image.path
        result.endings.setdefault(case, image.ending)
    if duplicates:
        raise EvaluationError(f"{folder}: more than one file for the same case and channel: " + "; ".join(duplicates))
    return result


def _find_case_file(folder: Path, case: str, suffixes: tuple[str, ...]) -> Path | None:
    """``{case}{suffix}{ending}`` in ``folder`` or ``folder/{case}/``, for the given suffixes ('' = bare)."""
    for directory in (folder, folder / case):
        if not directory.is_dir():
            continue
        for suffix in suffixes:
            for ending in SUPPORTED_FILE_ENDINGS:
                candidate = directory / f"{case}{suffix}{ending}"
                if candidate.is_file():
                    return candidate
    return None


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def match_folders(reference_folder: Path | str, prediction_folder: Path | str, labels_folder: Path | str | None = None,
                  masks_folder: Path | str | None = None, channel_names: dict[int, str] | None = None,
                  target: str | None = None, targets: list[str] | None = None, cases: list[str] | None = None,
                  allow_missing: bool = False, require_labels: bool = False) -> list[CaseFiles]:
    """Pair every prediction with its reference (and labels and brain mask) by case id and channel name.

    Args:
        target: channel name for files named ``{case}.nii.gz`` (no channel in the name).
        targets: evaluate only these channel names (default: every channel that has predictions).
        cases: evaluate only these case ids (default: every case); e.g. the validation cases of a fold
            when the reference folder is the whole ``imagesTr``.
        allow_missing: skip (with a warning) predictions without reference, references without prediction and
            cases without labels/mask instead of raising :class:`EvaluationError`.
        require_labels: every case needs a label map (BraTS ``-seg`` in the reference, or ``labels_folder``).

    Labels come from ``labels_folder`` (``{case}.ext``, ``{case}-seg.ext``, flat or in case sub-folders) or,
    without it, from the BraTS ``-seg`` files of the reference folder. Masks come from ``masks_folder``
    (``{case}.ext`` or ``{case}-mask.ext``); without it the evaluator derives the brain mask from the reference.
    """
    reference_folder, prediction_folder = Path(reference_folder), Path(prediction_folder)
    target_name = target.upper() if target else None
    wanted_targets = {t.upper() for t in targets} if targets else None
    wanted_cases = set(cases) if cases is not None else None

    reference = read_folder(reference_folder, channel_names)
    if reference.bare:
        if target_name is None:
            raise EvaluationError(
                f"{reference_folder}: files without a channel in their name ({_listing(sorted(reference.bare))}); "
                "name them {case}_{XXXX} or {case}-{t1n,t1c,t2w,t2f}, or give --target to say which channel they are")
        for stem, path in reference.bare.items():
            reference.images.setdefault(stem, {})[target_name] = path
    if not reference.images:
        raise EvaluationError(f"{reference_folder} holds no reference image ({{case}}_{{XXXX}} or {{case}}-{{seq}} files)")
    known_cases = set(reference.images)
    prediction = read_folder(prediction_folder, channel_names, known_cases)

    problems: list[str] = []
    predictions: dict[tuple[str, str], Path] = {}
    for case, channels in prediction.images.items():
        for name, path in channels.items():
            predictions[(case, name)] = path
    unmatched_bare = []
    for stem, path in prediction.bare.items():
        if stem in known_cases and target_name is not None:
            predictions[(stem, target_name)] = path
        elif stem in known_cases:
            problems.append(f"prediction {path.name} has no channel in its name; give --target (e.g. --target T1C)")
        else:
            unmatched_bare.append(path.name)
    if wanted_targets is not None:
        predictions = {key: path for key, path in predictions.items() if key[1] in wanted_targets}
    if wanted_cases is not None:
        predictions = {key: path for key, path in predictions.items() if key[0] in wanted_cases}
    if not predictions and not problems:
        detail = f" (unmatched files: {_listing(unmatched_bare)})" if unmatched_bare else ""
        raise EvaluationError(f"{prediction_folder} holds no prediction matching a reference case{detail}")

    without_reference = []
    for (case, name), path in sorted(predictions.items()):
        if case not in reference.images or name not in reference.images[case]:
            available = sorted(reference.images.get(case, {}))
            hint = f" (reference channels of {case}: {', '.join(available)})" if available else ""
            if available and name.isdigit():
                hint += "; give --dataset_json or -d so raw channel indices get names"
            without_reference.append(f"{path.name} [case {case}, channel {name}]{hint}")
    without_reference += [f"{name} [no reference case]" for name in unmatched_bare]
    predicted_targets = sorted({name for _, name in predictions})
    without_prediction = []
    for case in sorted(reference.images):
        if wanted_cases is not None and case not in wanted_cases:
            continue
        for name in predicted_targets:
            if name in reference.images[case] and (case, name) not in predictions:
                without_prediction.append(f"{case} [{name}]")
    if wanted_cases is not None:
        absent = sorted(wanted_cases - known_cases)
        without_prediction += [f"{case} [requested case has no reference]" for case in absent]
    if without_reference:
        problems.append(f"{len(without_reference)} prediction(s) without reference in {reference_folder}: "
                        + _listing(without_reference))
    if without_prediction:
        problems.append(f"{len(without_prediction)} reference(s) without prediction in {prediction_folder}: "
                        + _listing(without_prediction))

    matched: list[CaseFiles] = []
    for (case, name), path in sorted(predictions.items()):
        if case not in reference.images or name not in reference.images[case]:
            continue
        labels = None
        if labels_folder is not None:
            labels = _find_case_file(Path(labels_folder), case, ("", "-seg"))
            if labels is None:
                problems.append(f"no label map for case {case} in {labels_folder} "
                                f"(expected {case}.nii.gz or {case}-seg.nii.gz)")
        else:
            labels = reference.segmentations.get(case)
            if labels is None and require_labels:
                problems.append(f"no label map for case {case} (no {case}-seg file in {reference_folder}; give -l)")
        mask = None
        if masks_folder is not None:
            mask = _find_case_file(Path(masks_folder), case, ("", "-mask"))
            if mask is None:
                problems.append(f"no brain mask for case {case} in {masks_folder} (expected {case}.nii.gz)")
        channels = dict(sorted(reference.images[case].items(), key=lambda item: reference.indices.get(item[0], 0)))
        matched.append(CaseFiles(case=case, target=name, reference=reference.images[case][name], prediction=path,
                                 labels=labels, mask=mask, channels=channels, channel_indices=dict(reference.indices),
                                 file_ending=reference.endings.get(case, ".nii.gz")))
    if problems:
        message = "\n  - ".join(problems)
        if not allow_missing:
            raise EvaluationError(f"Reference and prediction folders do not match:\n  - {message}\n"
                                  "Fix the file names, or pass --allow_missing to skip these with a warning.")
        warnings.warn(f"Skipping unmatched files:\n  - {message}", stacklevel=2)
        if labels_folder is not None:
            matched = [c for c in matched if c.labels is not None]
        if require_labels:
            matched = [c for c in matched if c.labels is not None]
        if masks_folder is not None:
            matched = [c for c in matched if c.mask is not None]
    if not matched:
        raise EvaluationError(f"No case left to evaluate in {prediction_folder}")
    return matched
