"""Input folders for prediction: which layout they use, their cases, the missing sequence, output names.

Two layouts are understood:

- ``raw``: ``{case}_{XXXX}{file_ending}`` files side by side (the nnU-Net raw format); channel ``XXXX``
  is named by the model's dataset.json.
- ``brats``: BraTS / BraSyn case sub-folders ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f}.nii.gz``
  (``-seg`` files are ignored). The same files lying flat in the folder are accepted too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from synthunet.dataset.brats_layout import BRATS_SEQUENCES, find_brats_cases, split_brats_file_name
from synthunet.dataset.dataset_json import DatasetDescription, image_file_name, list_case_files
from synthunet.errors import SynthUNetError

Layout = Literal["raw", "brats"]

#: channel name (upper case) -> BraTS file suffix, e.g. "T1C" -> "t1c"
BRATS_SUFFIX_OF: dict[str, str] = {name.upper(): suffix for suffix, name in BRATS_SEQUENCES.items()}


class InputLayoutError(SynthUNetError, ValueError):
    """The input folder is neither a raw-format nor a BraTS-format folder, or a case does not fit."""

    hint = "documentation/predict.md describes the accepted input folders"


@dataclass
class InputCase:
    """One case of an input folder: its id and one file per available channel (channel name -> file)."""

    case_id: str
    files: dict[str, Path]
    layout: Layout
    ignored: list[Path] = field(default_factory=list)

    @property
    def channels(self) -> list[str]:
        return sorted(self.files)


def _brats_channel_files(case_id: str, suffix_files: dict[str, Path], dataset: DatasetDescription) -> dict[str, Path]:
    """Map BraTS suffixes (t1n, ...) to the dataset's channel names; the seg file is dropped."""
    files: dict[str, Path] = {}
    for suffix, path in suffix_files.items():
        if suffix == "seg":
            continue
        wanted = BRATS_SEQUENCES[suffix]
        matches = [name for name in dataset.channels if name.lower() == wanted.lower()]
        if not matches:
            raise InputLayoutError(
                f"Case {case_id}: the file {path.name} holds {wanted}, which is not a channel of the model's "
                f"dataset.json (channels: {', '.join(dataset.channels)}). BraTS layouts need channels named "
                f"{', '.join(BRATS_SEQUENCES.values())}.")
        files[matches[0]] = path
    return files


def _flat_brats_cases(folder: Path) -> dict[str, dict[str, Path]]:
    cases: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            parsed = split_brats_file_name(path.name)
            if parsed is not None:
                cases.setdefault(parsed[0], {})[parsed[1]] = path
    return cases


def detect_layout(folder: Path | str, dataset: DatasetDescription) -> Layout:
    """Say whether ``folder`` is a raw-format or a BraTS-format folder; raise if it is neither (or both)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputLayoutError(f"Input folder {folder} does not exist or is not a folder")
    raw_cases, _ = list_case_files(folder, dataset.file_ending)
    brats_cases = find_brats_cases(folder) or _flat_brats_cases(folder)
    if raw_cases and brats_cases:
        raise InputLayoutError(
            f"{folder} mixes raw-format files ({next(iter(raw_cases))}_XXXX{dataset.file_ending}) and BraTS case "
            f"files ({next(iter(brats_cases))}-t1n.nii.gz, ...). Put each layout in its own folder.")
    if raw_cases:
        return "raw"
    if brats_cases:
        return "brats"
    examples = ", ".join(sorted(p.name for p in folder.iterdir())[:5]) or "nothing"
    raise InputLayoutError(
        f"{folder} is neither a raw-format folder ({{case}}_{{XXXX}}{dataset.file_ending}, e.g. "
        f"{image_file_name('case001', 0, dataset.file_ending)}) nor a BraTS folder of case sub-folders "
        f"(BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz). It holds: {examples}")


def list_input_cases(folder: Path | str, dataset: DatasetDescription) -> tuple[Layout, list[InputCase]]:
    """Detect the layout of ``folder`` and list its cases with one file per available channel."""
    folder = Path(folder)
    layout = detect_layout(folder, dataset)
    cases: list[InputCase] = []
    if layout == "raw":
        raw_cases, _ = list_case_files(folder, dataset.file_ending)
        for case_id, by_index in raw_cases.items():
            unknown = sorted(set(by_index) - set(dataset.channel_names))
            if unknown:
                raise InputLayoutError(
                    f"Case {case_id}: channel index(es) {', '.join(f'{i:04d}' for i in unknown)} are not in the "
                    f"model's dataset.json (channels: "
                    f"{', '.join(f'{i:04d}={n}' for i, n in sorted(dataset.channel_names.items()))})")
            files = {dataset.channel_names[i]: path for i, path in by_index.items()}
            cases.append(InputCase(case_id, files, "raw"))
    else:
        brats_cases = find_brats_cases(folder) or _flat_brats_cases(folder)
        for case_id, suffix_files in brats_cases.items():
            files = _brats_channel_files(case_id, suffix_files, dataset)
            ignored = [p for s, p in suffix_files.items() if s == "seg"]
            cases.append(InputCase(case_id, files, "brats", ignored))
    return layout, cases


def missing_channels(case: InputCase, dataset: DatasetDescription) -> list[str]:
    """The dataset channels for which ``case`` has no file, in channel order."""
    return [name for name in dataset.channels if name not in case.files]


def detect_target(case: InputCase, dataset: DatasetDescription, trained_targets: Iterable[str]) -> str:
    """The one missing sequence of ``case``; raise naming the case if none, several, or no model for it."""
    missing = missing_channels(case, dataset)
    has = ", ".join(n for n in dataset.channels if n in case.files) or "nothing"
    trained = sorted(trained_targets)
    if not missing:
        raise InputLayoutError(
            f"Case {case.case_id} has every sequence ({has}), so no sequence is missing. Remove one, or pass "
            f"--target to predict a sequence anyway.")
    if len(missing) > 1:
        raise InputLayoutError(
            f"Case {case.case_id} misses {len(missing)} sequences ({', '.join(missing)}; it has {has}). "
            f"--target auto needs exactly one missing sequence.")
    target = missing[0]
    if target.upper() not in {t.upper() for t in trained}:
        raise InputLayoutError(
            f"Case {case.case_id} misses {target}, but no model was trained to predict {target} "
            f"(trained targets: {', '.join(trained) or 'none'}).")
    return target


def output_file_name(case_id: str, target: str, layout: Layout, dataset: DatasetDescription,
                     brats_subfolders: bool = False) -> str:
    """Path of a prediction relative to the output folder.

    raw: ``{case}_{XXXX}{file_ending}`` (XXXX = target channel index); brats: ``{case}-{seq}.nii.gz``
    (BraSyn 2025 flat layout) or ``{case}/{case}-{seq}.nii.gz`` with ``brats_subfolders``.
    """
    if layout == "raw":
        return image_file_name(case_id, dataset.channel_index(target), dataset.file_ending)
    suffix = BRATS_SUFFIX_OF.get(target.upper())
    if suffix is None:
        raise InputLayoutError(f"{target} has no BraTS file suffix (known: {', '.join(BRATS_SUFFIX_OF)})")
    name = f"{case_id}-{suffix}.nii.gz"
    return f"{case_id}/{name}" if brats_subfolders else name


def uncertainty_file_name(prediction_name: str) -> str:
    """``x/{name}.nii.gz`` -> ``x/{name}_uncertainty.nii.gz`` (any supported ending is kept)."""
    for ending in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
        if prediction_name.endswith(ending):
            return prediction_name[: -len(ending)] + "_uncertainty" + ending
    raise ValueError(f"{prediction_name} has no supported image file ending")
