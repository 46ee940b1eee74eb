"""Predicting with the configuration(s) ``synth_find_best_configuration`` chose (``synth_predict -c best``).

The choice for one target sequence is in ``$synthUNet_results/DatasetXXX_Name/inference_information_{TARGET}.json``
(written by :mod:`synthunet.inference.find_best_configuration`, which imports the file name from here). Its
``best`` block names the model folders (relative to the file's folder), the configurations and the folds. One configuration: that model predicts, as with
``-c CONFIGURATION``. Several: each predicts the cases of that target into a temporary folder and the
predictions are averaged voxel by voxel (:func:`synthunet.inference.ensemble_folders.ensemble_folders`).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from synthunet.inference.ensemble_folders import ensemble_folders
from synthunet.inference.predictor import SynthPredictor
from synthunet.inference.workers import make_executor
from synthunet.prediction.model_folder import ModelFolderError, parse_fold

BEST = "best"
INFERENCE_INFORMATION_PREFIX = "inference_information_"
INFORMATION_VERSION = 1


def inference_information_path(results_dataset_folder: Path | str, target: str) -> Path:
    """``{results_dataset_folder}/inference_information_{TARGET}.json`` (the ``.md`` lies beside it)."""
    return Path(results_dataset_folder) / f"{INFERENCE_INFORMATION_PREFIX}{target}.json"


def inference_information_files(results_dataset_folder: Path | str) -> dict[str, Path]:
    """Target -> ``inference_information_{TARGET}.json`` for every such file of a dataset's results folder."""
    folder = Path(results_dataset_folder)
    if not folder.is_dir():
        return {}
    return {path.name[len(INFERENCE_INFORMATION_PREFIX):-len(".json")]: path
            for path in sorted(folder.glob(f"{INFERENCE_INFORMATION_PREFIX}*.json"))}


def uses_best(configuration: str) -> bool:
    """``-c best`` or ``-c path/to/inference_information_*.json``."""
    return configuration.lower() == BEST or configuration.lower().endswith(".json")


@dataclass(frozen=True)
class BestChoice:
    """What an inference_information file says for one target: the model folders to use and their folds."""

    path: Path
    target: str
    name: str
    configurations: tuple[str, ...]
    model_folders: tuple[Path, ...]
    folds: tuple[int | str, ...]

    @property
    def is_ensemble(self) -> bool:
        return len(self.model_folders) > 1


def load_inference_information(path: Path | str, results_dataset_folder: Path | str | None = None) -> BestChoice:
    """Read and check an inference_information file; model folders are looked up next to it, then in
    ``results_dataset_folder``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path} does not exist; run synth_find_best_configuration first")
    try:
        content = json.loads(path.read_text())
        best = content["best"]
        target = str(content["target"])
        names = [str(n) for n in best["model_folders"]]
        configurations = tuple(str(c) for c in best["configurations"])
        folds = tuple(parse_fold(f) for f in best["folds"])
        name = str(best.get("name", " + ".join(configurations)))
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFolderError(f"{path} is not an inference_information file written by "
                               f"synth_find_best_configuration ({type(error).__name__}: {error})") from None
    if not names or len(names) != len(configurations) or not folds:
        raise ModelFolderError(f"{path}: 'best' needs one model folder per configuration and at least one fold")
    places = [path.parent] + ([Path(results_dataset_folder)] if results_dataset_folder is not None else [])
    folders = []
    for folder_name in names:
        found = next((place / folder_name for place in places if (place / folder_name).is_dir()), None)
        if found is None:
            raise ModelFolderError(f"{path} chooses the model folder {folder_name}, which is not in "
                                   f"{' or '.join(str(p) for p in places)}")
        folders.append(found)
    return BestChoice(path, target, name, configurations, tuple(folders), folds)


def load_choices(configuration: str, results_dataset_folder: Path | str | None, target: str = "auto"
                 ) -> dict[str, BestChoice]:
    """Target -> choice for ``-c best`` (every inference_information file of the dataset, or ``--target``'s)
    or ``-c FILE.json`` (that file)."""
    if configuration.lower() != BEST:
        choice = load_inference_information(configuration, results_dataset_folder)
        if target.lower() not in ("auto", choice.target.lower()):
            raise ModelFolderError(f"{configuration} is the choice for {choice.target}, not for --target {target}")
        return {choice.target: choice}
    if results_dataset_folder is None:
        raise ModelFolderError("-c best needs -d DATASET (it reads the dataset's inference_information files)")
    files = inference_information_files(results_dataset_folder)
    if target.lower() != "auto":
        files = {t: p for t, p in files.items() if t.lower() == target.lower()}
    if not files:
        which = "" if target.lower() == "auto" else f" for {target}"
        raise ModelFolderError(
            f"No {INFERENCE_INFORMATION_PREFIX}*.json{which} in {results_dataset_folder}; run "
            f"synth_find_best_configuration -d DATASET -t {target if target.lower() != 'auto' else 'TARGET'} first "
            f"(or pass -c CONFIGURATION)")
    choices = {}
    for path in files.values():
        choice = load_inference_information(path, results_dataset_folder)
        choices[choice.target] = choice
    return choices


def predict_with_choices(choices: dict[str, BestChoice], input_folder: Path | str, output_folder: Path | str,
                         target: str = "auto", folds: Sequence[int | str] | None = None,
                         save_uncertainty: bool = False, brats_subfolders: bool = False,
                         continue_prediction: bool = False, predictor_options: dict | None = None,
                         files_options: dict | None = None, cases: Sequence[str] | None = None) -> list[Path]:
    """Predict ``input_folder`` (or only its ``cases``) with the chosen model(s) of each target; return the files
    written.

    ``folds`` overrides the files' folds (``-f``). ``predictor_options`` go to every :class:`SynthPredictor`
    (device, step size, cascade, ...), ``files_options`` to ``predict_from_files`` (worker processes).
    A target chosen as an ensemble of configurations is predicted once per configuration into a temporary
    folder beside the output folder, then averaged into it; no uncertainty is written for it.
    """
    predictor_options = {k: v for k, v in (predictor_options or {}).items() if k != "folds"}
    files_options = dict(files_options or {})
    input_folder, output_folder = Path(input_folder), Path(output_folder)
    ensembles = [c.target for c in choices.values() if c.is_ensemble]
    if save_uncertainty and ensembles:
        raise ModelFolderError(f"--save_uncertainty is not available for an ensemble of configurations (the choice for "
                               f"{', '.join(ensembles)}: {', '.join(choices[t].name for t in ensembles)}); "
                               f"drop it, or predict with one configuration (-c CONFIGURATION)")
    # which case gets which target, every problem at once, before anything is predicted
    planner = SynthPredictor([c.model_folders[0] for c in choices.values()], **predictor_options)
    with make_executor(files_options.get("num_processes_preprocessing", 2)) as pool:  # the files too
        jobs = planner.check_cases(input_folder, output_folder, target, brats_subfolders, save_uncertainty,
                                   cases=cases, continue_prediction=continue_prediction, executor=pool)
    written: list[Path] = []
    for choice in choices.values():
        todo = [job.case_id for job in jobs if job.target == choice.target
                and not (continue_prediction and job.is_done())]
        if not todo:
            continue
        options = {**predictor_options, "folds": list(folds) if folds is not None else list(choice.folds)}
        run = {"target": choice.target, "brats_subfolders": brats_subfolders, "cases": todo, "check_inputs": False,
               **files_options}
        if not choice.is_ensemble:
            predictor = SynthPredictor([choice.model_folders[0]], **options)
            written += predictor.predict_from_files(input_folder, output_folder, save_uncertainty=save_uncertainty,
                                                    **run)
            continue
        output_folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{output_folder.name}_members_", dir=output_folder.parent) as tmp:
            members = []
            for number, (configuration, folder) in enumerate(zip(choice.configurations, choice.model_folders)):
                member_output = Path(tmp) / f"{number}_{configuration}"
                SynthPredictor([folder], **options).predict_from_files(input_folder, member_output, **run)
                members.append(member_output)
            written += ensemble_folders(members, output_folder)
    return written
