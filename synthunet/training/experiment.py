"""Everything a training run is about, resolved and checked once: dataset, plans, configuration,
target, inputs, fold and folders (:class:`Experiment`).

Every problem a user can cause (unknown target, missing preprocessing, missing configuration, bad
fold) raises :class:`ExperimentError` with a message that says what to do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from synthunet import paths
from synthunet.dataset.identifiers import resolve_dataset_name
from synthunet.dataset.label_scheme import BRATS_2023_LABELS, LabelScheme, label_scheme_from_labels
from synthunet.errors import SynthUNetError
from synthunet.plans import ConfigurationPlan, Plans, as_plans
from synthunet.prediction.model_folder import (DEFAULT_PLANS, SEGMENTATION_TARGET, ModelFolderError, model_folder_name,
                                              parse_fold)
from synthunet.training.splits import fold_cases, load_or_create_splits

#: label values of a segmenter when dataset.json declares none (BraTS: background, NCR, ED, ET)
DEFAULT_SEGMENTATION_LABELS = dict(BRATS_2023_LABELS)


class ExperimentError(SynthUNetError, ValueError):
    """The requested training run cannot be set up (the message says why and what to do)."""

    hint = "documentation/training.md describes the training options and folders"


def fold_folder_name(fold: int | str) -> str:
    """``fold_0`` .. ``fold_4`` or ``fold_all``."""
    return f"fold_{fold}"


def list_preprocessed_cases(data_folder: Path) -> list[str]:
    """Case ids with a complete preprocessed case (properties JSON and both arrays) in ``data_folder``."""
    from synthunet.preprocessing.dataset_preprocessing import list_preprocessed_cases as complete_cases

    return complete_cases(data_folder)


def _match_channel(name: str, channels: Sequence[str], role: str) -> str:
    for channel in channels:
        if channel.lower() == str(name).lower():
            return channel
    raise ExperimentError(f"{role} {name!r} is not a channel of this dataset; channels are: {', '.join(channels)}")


def _read_json(path: Path, hint: str) -> dict:
    if not path.is_file():
        raise ExperimentError(f"{path} does not exist. {hint}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ExperimentError(f"{path} is not valid JSON: {error}") from error


@dataclass
class Experiment:
    """A resolved training run. Build it with :meth:`Experiment.resolve` (checks everything)."""

    dataset_name: str
    plans: Plans
    configuration: str
    target: str
    inputs: list[str]
    fold: int | str
    trainer_name: str
    preprocessed_dataset_folder: Path
    results_dataset_folder: Path
    dataset_json: dict = field(default_factory=dict)
    fingerprint: dict | None = None
    splits: list[dict] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)

    # ---- derived properties -------------------------------------------------------------------
    @property
    def plans_name(self) -> str:
        return self.plans.plans_name

    @property
    def config(self) -> ConfigurationPlan:
        """The plans' block for this configuration."""
        return self.plans.configuration(self.configuration)

    @property
    def channels(self) -> list[str]:
        """Channel names in channel-index order (the order of the preprocessed arrays)."""
        return self.plans.channels

    @property
    def dimension(self) -> int:
        return self.config.dimension

    @property
    def is_2p5d(self) -> bool:
        """True for 2D configurations: a 2D network fed with k-slice stacks (k = ``num_slices``, default 1)."""
        return self.dimension == 2

    @property
    def num_slices(self) -> int:
        return self.config.num_slices if self.is_2p5d else 1

    @property
    def is_segmentation(self) -> bool:
        """True for the reserved target ``seg``: a label map is predicted from the inputs."""
        return self.target == SEGMENTATION_TARGET

    @property
    def label_scheme(self) -> LabelScheme:
        """Tumour labels and BraTS regions of dataset.json (plain labels or nnU-Net regions; BraTS 2023 when it
        declares none), see :mod:`synthunet.dataset.label_scheme`."""
        labels = self.dataset_json.get("labels")
        if not labels:
            return label_scheme_from_labels(DEFAULT_SEGMENTATION_LABELS,
                                            source="the BraTS 2023 default labels (dataset.json declares none)")
        return label_scheme_from_labels(labels, self.dataset_json.get("regions_class_order"), "dataset.json")

    @property
    def labels(self) -> dict[str, int]:
        """Label name -> value, one per value the label files hold (background 0 included). Names are the
        label scheme's: NCR / ED / ET where recognised (also for nnU-Net region datasets, whose regions are
        unions of these values), otherwise dataset.json's. BraTS labels when dataset.json declares none."""
        return self.label_scheme.as_labels()

    @property
    def num_classes(self) -> int:
        """Output classes of a segmenter: the largest label value + 1 (background 0 included)."""
        return max(int(v) for v in self.labels.values()) + 1

    @property
    def input_indices(self) -> list[int]:
        return [self.channels.index(c) for c in self.inputs]

    @property
    def target_index(self) -> int:
        return self.channels.index(self.target)

    @property
    def num_input_channels(self) -> int:
        """Network input channels: ``len(inputs)`` (3D) or ``num_slices * len(inputs)`` (2.5D)."""
        return len(self.inputs) * self.num_slices

    @property
    def data_folder(self) -> Path:
        return self.preprocessed_dataset_folder / self.config.data_identifier

    @property
    def model_folder(self) -> Path:
        return self.results_dataset_folder / model_folder_name(self.trainer_name, self.plans_name,
                                                                self.configuration, self.target)

    @property
    def output_folder(self) -> Path:
        return self.model_folder / fold_folder_name(self.fold)

    def fold_cases(self) -> tuple[list[str], list[str]]:
        """(training case ids, validation case ids) of this fold."""
        return fold_cases(self.splits, self.fold, self.case_ids)

    def model_info(self, residual_input: str | None = None) -> dict:
        """The content of ``model_info.json`` (documentation/model_folder_format.md)."""
        info = {"trainer": self.trainer_name, "plans_name": self.plans_name, "configuration": self.configuration,
                "target": self.target, "inputs": list(self.inputs), "residual_input": residual_input}
        if self.is_2p5d:
            info["num_slices"] = self.num_slices
            info["slicing_axes"] = list(self.config.slicing_axes)
        if self.is_segmentation:
            info.update(task="segmentation", num_classes=self.num_classes, labels=self.labels)
        return info

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def resolve(cls, dataset: str | int, configuration: str, target: str, fold: str | int,
                trainer_name: str = "SynthTrainer", plans_name: str = DEFAULT_PLANS,
                inputs: Sequence[str] | None = None, create_splits: bool = True) -> "Experiment":
        """Find and check everything; raise :class:`ExperimentError` with a helpful message on any problem."""
        dataset_name = resolve_dataset_name(dataset)
        preprocessed = paths.preprocessed_folder() / dataset_name
        if not preprocessed.is_dir():
            raise ExperimentError(f"{preprocessed} does not exist: the dataset has not been planned and preprocessed. "
                                  f"Run synth_plan_and_preprocess -d {dataset_name[7:10]} first.")
        plans_file = preprocessed / f"{plans_name}.json"
        plans = as_plans(_read_json(plans_file, f"Run synth_plan_experiment -d {dataset_name[7:10]} (or pass the "
                                                "right -p PLANS)."), str(plans_file))
        configurations = plans.configurations
        if configuration not in configurations:
            raise ExperimentError(f"Configuration {configuration!r} is not in {plans_name}.json; available: "
                                  f"{', '.join(sorted(configurations)) or 'none'}")
        configurations[configuration].check_trainable(f"{plans_file}: configurations.{configuration}")
        channels = plans.channels
        if str(target).lower() == SEGMENTATION_TARGET:
            if any(c.lower() == SEGMENTATION_TARGET for c in channels):
                raise ExperimentError(f"A channel is named {SEGMENTATION_TARGET!r}, which is the reserved TARGET of "
                                      "tumour segmenters; rename the channel in dataset.json")
            target_name = SEGMENTATION_TARGET
        else:
            target_name = _match_channel(target, channels, "TARGET")
        if inputs:
            input_names = [_match_channel(c, channels, "Input") for c in inputs]
            if target_name in input_names:
                raise ExperimentError(f"The target {target_name} cannot also be an input")
            if len(set(input_names)) != len(input_names):
                raise ExperimentError(f"Inputs are listed twice: {input_names}")
        else:
            input_names = [c for c in channels if c != target_name]
        if not input_names:
            raise ExperimentError(f"No input channels are left once {target_name} is the target")
        try:
            parsed_fold = parse_fold(fold)
        except ModelFolderError as error:
            raise ExperimentError(str(error)) from None
        data_folder = preprocessed / configurations[configuration].data_identifier
        case_ids = list_preprocessed_cases(data_folder) if data_folder.is_dir() else []
        if not case_ids:
            raise ExperimentError(f"No preprocessed cases in {data_folder}. Run synth_preprocess -d "
                                  f"{dataset_name[7:10]} -c {configuration} first.")
        dataset_json_path = preprocessed / "dataset.json"
        if not dataset_json_path.is_file():
            try:
                dataset_json_path = paths.raw_folder() / dataset_name / "dataset.json"
            except paths.PathNotConfiguredError:
                pass
        dataset_json = _read_json(dataset_json_path, "dataset.json is needed next to the plans or in the raw dataset.")
        fingerprint_path = preprocessed / "dataset_fingerprint.json"
        fingerprint = json.loads(fingerprint_path.read_text()) if fingerprint_path.is_file() else None
        splits: list[dict] = []
        if parsed_fold != "all" or create_splits:
            try:
                splits = load_or_create_splits(preprocessed, case_ids)
            except ValueError as error:
                if parsed_fold != "all":
                    raise ExperimentError(str(error)) from error
        if parsed_fold != "all" and not 0 <= parsed_fold < len(splits):
            raise ExperimentError(f"Fold {parsed_fold} does not exist: {preprocessed / 'splits_final.json'} has folds "
                                  f"0..{len(splits) - 1}; FOLD may also be 'all'")
        return cls(dataset_name=dataset_name, plans=plans, configuration=configuration, target=target_name,
                   inputs=input_names, fold=parsed_fold, trainer_name=trainer_name,
                   preprocessed_dataset_folder=preprocessed, results_dataset_folder=paths.results_folder() / dataset_name,
                   dataset_json=dataset_json, fingerprint=fingerprint, splits=splits, case_ids=case_ids)
