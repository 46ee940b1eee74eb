"""Reading and checking ``dataset.json`` and listing the cases of a raw dataset.

The format follows nnU-Net v2 (see documentation/dataset_format.md)::

    {"channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
     "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3},   # optional
     "numTraining": 40, "file_ending": ".nii.gz"}

``labels`` may also declare nnU-Net v2 regions (lists of label values) with ``regions_class_order``;
:mod:`synthunet.dataset.label_scheme` reads both forms.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from synthunet.dataset.label_scheme import LabelScheme, brats_2023_scheme, label_scheme_from_labels, parse_labels
from synthunet.errors import SynthUNetError

SUPPORTED_FILE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-\.]*$")
CHANNEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


class DatasetJsonError(SynthUNetError, ValueError):
    """dataset.json is missing, unreadable or breaks the schema."""

    hint = "documentation/dataset_format.md describes dataset.json"


class UnknownChannelError(SynthUNetError, KeyError):
    """A channel (sequence) name that dataset.json does not declare."""


@dataclass(frozen=True)
class DatasetDescription:
    """The validated content of a dataset.json."""

    channel_names: dict[int, str]
    file_ending: str
    num_training: int
    labels: dict[str, int | tuple[int, ...]] = field(default_factory=dict)  # a tuple: an nnU-Net region
    name: str = ""
    regions_class_order: tuple[int, ...] | None = None

    @property
    def channels(self) -> list[str]:
        """Channel names ordered by channel index."""
        return [self.channel_names[i] for i in sorted(self.channel_names)]

    def channel_index(self, channel: str) -> int:
        """Index of a channel given by name (case-insensitive), e.g. ``"T1C"`` -> 1."""
        for index, name in self.channel_names.items():
            if name.lower() == channel.lower():
                return index
        raise UnknownChannelError(f"Channel {channel!r} is not in dataset.json (channels: {', '.join(self.channels)})")

    @property
    def label_values(self) -> set[int]:
        """The integer label values the label files may hold (0 included; every value of every region;
        empty when no labels are declared)."""
        values: set[int] = set()
        for value in self.labels.values():
            values |= set(value) if isinstance(value, tuple) else {value}
        return values

    @property
    def uses_regions(self) -> bool:
        """True when ``labels`` declares nnU-Net regions (lists of values, or ``regions_class_order``)."""
        return self.regions_class_order is not None or any(isinstance(v, tuple) for v in self.labels.values())

    def labels_json(self) -> dict:
        """``labels`` (and ``regions_class_order`` when declared) as dataset.json holds them."""
        content: dict = {"labels": {k: list(v) if isinstance(v, tuple) else v for k, v in self.labels.items()}}
        if self.regions_class_order is not None:
            content["regions_class_order"] = list(self.regions_class_order)
        return content

    def label_scheme(self, source: str = "dataset.json") -> LabelScheme:
        """Tumour parts and BraTS regions of ``labels`` (:mod:`synthunet.dataset.label_scheme`); the BraTS
        2023 default when no labels are declared."""
        if not self.labels:
            return brats_2023_scheme(f"the BraTS 2023 default labels (1 NCR, 2 ED, 3 ET; {source} declares none)")
        return label_scheme_from_labels(self.labels, self.regions_class_order, source)


def parse_dataset_json(content: dict) -> tuple[DatasetDescription | None, list[str]]:
    """Check a dataset.json dict; return the description (or None) and every problem found."""
    problems: list[str] = []
    if not isinstance(content, dict):
        return None, ["dataset.json must hold a JSON object"]
    channels_raw = content.get("channel_names", content.get("modality"))
    channel_names: dict[int, str] = {}
    if not isinstance(channels_raw, dict) or not channels_raw:
        problems.append("'channel_names' is missing or not a non-empty object like {\"0\": \"T1N\", \"1\": \"T1C\"}")
    else:
        for key, value in channels_raw.items():
            if not str(key).isdigit():
                problems.append(f"channel_names key {key!r} is not a channel index (0, 1, 2, ...)")
                continue
            if not isinstance(value, str) or not CHANNEL_NAME_PATTERN.match(value):
                problems.append(f"channel_names[{key!r}] = {value!r} must be a name of letters, digits, '_' or '-'")
                continue
            channel_names[int(key)] = value
        if channel_names and sorted(channel_names) != list(range(len(channel_names))):
            problems.append(f"channel indices must be 0..{len(channel_names) - 1} without gaps, got {sorted(channel_names)}")
        lowered = [v.lower() for v in channel_names.values()]
        if len(set(lowered)) != len(lowered):
            problems.append("channel names must be unique (case-insensitive)")
    file_ending = content.get("file_ending")
    if file_ending not in SUPPORTED_FILE_ENDINGS:
        problems.append(f"'file_ending' is {file_ending!r}; it must be one of {', '.join(SUPPORTED_FILE_ENDINGS)}")
    num_training = content.get("numTraining")
    if not isinstance(num_training, int) or isinstance(num_training, bool) or num_training < 1:
        problems.append(f"'numTraining' must be a positive integer, got {num_training!r}")
    clean_labels, regions_class_order, label_problems = parse_labels(content.get("labels", {}) or {},
                                                                     content.get("regions_class_order"))
    problems += label_problems
    if problems:
        return None, problems
    return DatasetDescription(channel_names=channel_names, file_ending=file_ending, num_training=num_training,
                              labels=clean_labels, name=str(content.get("name", "")),
                              regions_class_order=regions_class_order), []


def load_dataset_json(path: Path) -> DatasetDescription:
    """Read and check a dataset.json; raise :class:`DatasetJsonError` listing every problem."""
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.json"
    if not path.is_file():
        raise DatasetJsonError(f"{path} does not exist")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetJsonError(f"{path} is not valid JSON: {error}") from error
    description, problems = parse_dataset_json(content)
    if problems:
        raise DatasetJsonError(f"{path} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return description


def split_image_file_name(file_name: str, file_ending: str) -> tuple[str, int] | None:
    """Split ``{case}_{XXXX}{file_ending}`` into (case id, channel index); None if it does not match."""
    if not file_name.endswith(file_ending):
        return None
    stem = file_name[: -len(file_ending)]
    match = re.fullmatch(r"(.+)_(\d{4})", stem)
    if match is None or not CASE_ID_PATTERN.match(match.group(1)):
        return None
    return match.group(1), int(match.group(2))


def image_file_name(case_id: str, channel: int, file_ending: str) -> str:
    """``{case}_{XXXX}{file_ending}`` for a case and channel index."""
    return f"{case_id}_{channel:04d}{file_ending}"


def list_case_files(images_folder: Path, file_ending: str) -> tuple[dict[str, dict[int, Path]], list[str]]:
    """Map case id -> {channel index: file} for a raw images folder; also return names that do not fit."""
    cases: dict[str, dict[int, Path]] = {}
    misfits: list[str] = []
    if not Path(images_folder).is_dir():
        return cases, misfits
    for path in sorted(Path(images_folder).iterdir()):
        if path.name.startswith("."):
            continue
        parsed = split_image_file_name(path.name, file_ending)
        if parsed is None:
            misfits.append(path.name)
            continue
        case_id, channel = parsed
        cases.setdefault(case_id, {})[channel] = path
    return cases, misfits
