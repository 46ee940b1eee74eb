"""Preprocessing a whole raw dataset for configurations of a plans file, and loading the results.

Output per case in ``$synthUNet_preprocessed/DatasetXXX_Name/{data_identifier}/``: ``{case}.npy|.b2nd``
(C, z, y, x) float32, ``{case}_seg.npy|.b2nd`` (1, z, y, x) int8 and ``{case}.json`` (properties). Every
file is written under a temporary name and renamed; the properties JSON is renamed last and marks the
case as complete, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from synthunet.dataset.dataset_json import load_dataset_json
from synthunet.dataset.identifiers import DEFAULT_PLANS, preprocessed_dataset_folder, raw_dataset_folder
from synthunet.dataset.raw_cases import RawCase, list_raw_cases, load_raw_case
from synthunet.errors import InputError
from synthunet.plans import Plans, as_plans
from synthunet.preprocessing.case_preprocessing import preprocess_arrays, preprocessing_signature
from synthunet.preprocessing.storage import (DEFAULT_FORMAT, FORMATS, TEMPORARY_PREFIX, array_path, find_array,
                                             open_array, save_array)
from synthunet.utilities.atomic_io import write_json_atomic
from synthunet.utilities.parallel import run_parallel


def load_plans(dataset: str | int, plans_name: str = DEFAULT_PLANS) -> dict:
    """Read ``$synthUNet_preprocessed/DatasetXXX_Name/{plans_name}.json`` (checked against :mod:`synthunet.plans`;
    the file's content is returned, :func:`synthunet.plans.as_plans` types it)."""
    path = preprocessed_dataset_folder(dataset) / f"{plans_name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run synth_plan_experiment first")
    plans = json.loads(path.read_text())
    as_plans(plans, str(path))
    return plans


def case_is_complete(folder: Path, case_id: str, signature: str | None = None) -> bool:
    """True when the properties JSON (the completion marker) and both arrays exist (and the signature matches)."""
    properties_file = Path(folder) / f"{case_id}.json"
    if not properties_file.is_file():
        return False
    if find_array(Path(folder) / case_id) is None or find_array(Path(folder) / f"{case_id}_seg") is None:
        return False
    if signature is None:
        return True
    try:
        return json.loads(properties_file.read_text()).get("preprocessing_signature") == signature
    except (json.JSONDecodeError, OSError):
        return False


def preprocess_raw_case(case: RawCase, plans: Mapping, configuration: str, output_folder: Path,
                        file_format: str = DEFAULT_FORMAT) -> str:
    """Preprocess one raw case into ``output_folder``; return its case id."""
    loaded = load_raw_case(case)
    data, seg, properties, _ = preprocess_arrays(loaded.images, loaded.geometry, plans, configuration,
                                                 mask=loaded.mask, label=loaded.label, case_id=case.case_id)
    properties["brain_mask_source"] = "masksTr" if loaded.mask is not None else "nonzero"
    properties["file_format"] = file_format
    properties["raw_files"] = loaded.files
    output_folder = Path(output_folder)
    marker = output_folder / f"{case.case_id}.json"
    marker.unlink(missing_ok=True)  # the case is incomplete until the new marker is in place
    for stem in (case.case_id, f"{case.case_id}_seg"):  # arrays left in another format would shadow the new ones
        for other in FORMATS:
            if other != file_format:
                array_path(output_folder / stem, other).unlink(missing_ok=True)
    save_array(data, output_folder / case.case_id, file_format)
    save_array(seg, output_folder / f"{case.case_id}_seg", file_format)
    write_json_atomic(marker, properties, indent=None)
    return case.case_id


def _preprocess_task(arguments: tuple) -> str:
    case, plans, configuration, output_folder, file_format = arguments
    return preprocess_raw_case(case, plans, configuration, output_folder, file_format)


def remove_temporary_files(folder: Path) -> int:
    """Delete leftovers of an interrupted run (files named ``.tmp_*``); return how many."""
    removed = 0
    for path in Path(folder).glob(f"{TEMPORARY_PREFIX}*"):
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


def _group_by_data_identifier(plans: Plans, configurations: Sequence[str]) -> dict[str, str]:
    """data_identifier -> the configuration used to produce it; errors on inconsistent sharing."""
    chosen: dict[str, str] = {}
    for configuration in configurations:
        block = plans.configuration(configuration)
        identifier = block.data_identifier
        if identifier in chosen:
            first = plans.configuration(chosen[identifier])
            if preprocessing_signature(plans, configuration) != preprocessing_signature(plans, chosen[identifier]) \
                    or block.spacing != first.spacing:
                raise InputError(f"Configurations {chosen[identifier]} and {configuration} share data_identifier "
                                 f"{identifier} but differ in spacing or resampling")
            continue
        chosen[identifier] = configuration
    return chosen


def preprocess_dataset(dataset: str | int, plans_name: str = DEFAULT_PLANS,
                       configurations: Sequence[str] | None = None, num_processes: int = 2,
                       overwrite: bool = False, progress: bool = True,
                       file_format: str = DEFAULT_FORMAT) -> dict[str, dict[str, int]]:
    """Preprocess every training case of ``dataset`` for ``configurations`` (None: all in the plans).

    Configurations sharing a ``data_identifier`` are preprocessed once. Complete cases made with the same
    plans are skipped unless ``overwrite``. Returns ``{data_identifier: {"processed": n, "skipped": m}}``.
    """
    plans = as_plans(load_plans(dataset, plans_name))
    raw_folder = raw_dataset_folder(dataset)
    description = load_dataset_json(raw_folder / "dataset.json")
    if description.channels != plans.channels:
        raise InputError(f"dataset.json channels {description.channels} differ from the plans' "
                         f"{plans.channels}; re-plan the dataset")
    cases = list_raw_cases(raw_folder, description)
    configurations = list(configurations) if configurations else list(plans.configurations)
    summary: dict[str, dict[str, int]] = {}
    for identifier, configuration in _group_by_data_identifier(plans, configurations).items():
        output_folder = preprocessed_dataset_folder(dataset) / identifier
        output_folder.mkdir(parents=True, exist_ok=True)
        remove_temporary_files(output_folder)
        signature = preprocessing_signature(plans, configuration)
        todo = [case for case in cases
                if overwrite or not case_is_complete(output_folder, case.case_id, signature)]
        tasks = [(case, plans, configuration, output_folder, file_format) for case in todo]
        for _ in run_parallel(_preprocess_task, tasks, num_processes, progress, identifier,
                              name=lambda task: task[0].case_id):
            pass
        summary[identifier] = {"processed": len(todo), "skipped": len(cases) - len(todo)}
    return summary


def load_case(folder: Path | str, case_id: str, mmap: bool = True):
    """``(data, seg, properties)`` of a preprocessed case; with ``mmap`` the arrays read only what is sliced."""
    folder = Path(folder)
    properties_file = folder / f"{case_id}.json"
    if not properties_file.is_file():
        raise FileNotFoundError(f"{properties_file} does not exist: case {case_id} is not (completely) preprocessed")
    properties = json.loads(properties_file.read_text())
    return open_array(folder / case_id, mmap), open_array(folder / f"{case_id}_seg", mmap), properties


def list_preprocessed_cases(folder: Path | str) -> list[str]:
    """Case ids with a complete preprocessed case in ``folder`` (sorted)."""
    folder = Path(folder)
    return sorted(p.stem for p in folder.glob("*.json")
                  if not p.name.startswith(TEMPORARY_PREFIX) and case_is_complete(folder, p.stem))
