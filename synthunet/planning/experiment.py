"""``plan_experiment``: fingerprint -> plans file(s) in the preprocessed dataset folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from synthunet.dataset.identifiers import DEFAULT_PLANS
from synthunet.dataset.image_io import remove_stale_temporaries
from synthunet.planning.budget import Budget
from synthunet.planning.configuration import DEFAULT_ARCHITECTURE
from synthunet.planning.cpu_probe import probe_cpu_speed
from synthunet.planning.planner import DEFAULT_CONFIGURATIONS, DEFAULT_PLANNER, DefaultPlanner, get_planner
from synthunet.planning.plans_io import read_plans, write_plans
from synthunet.planning.timing import CpuSpeed
from synthunet.utilities.devices import default_device
from synthunet.utilities.threads import training_threads

FINGERPRINT_FILE = "dataset_fingerprint.json"
GPU_PLANS_SUFFIX = "_gpu"


def _speeds(cpu_speed: CpuSpeed | float | None, configurations: Sequence[str]) -> dict[int, CpuSpeed]:
    if isinstance(cpu_speed, (int, float)):
        cpu_speed = CpuSpeed(float(cpu_speed))
    if isinstance(cpu_speed, CpuSpeed):
        return {2: cpu_speed, 3: cpu_speed}
    dimensions = {2 if c == "2.5d" else 3 for c in configurations}
    return {d: probe_cpu_speed(d) for d in sorted(dimensions, reverse=True)}


def _normalization(fingerprint: dict) -> dict | None:
    if "landmarks" not in fingerprint:
        return None
    from synthunet.preprocessing.nyul import normalization_plans_entry
    return normalization_plans_entry(fingerprint)


def plans_for_fingerprint(fingerprint: dict, *, configurations: Sequence[str] = DEFAULT_CONFIGURATIONS,
                          device: str = "cpu", gpu_memory_gb: float = 8.0, cpu_memory_gb: float = 8.0,
                          step_time_budget_s: float = 1.0, num_slices: int = 3, cpu_training_minutes: float = 10.0,
                          gan: str | bool | None = None, cpu_speed: CpuSpeed | float | None = None,
                          plans_name: str = DEFAULT_PLANS, data_identifier_prefix: str | None = None,
                          shared_identifiers: dict | None = None, architecture: str = DEFAULT_ARCHITECTURE,
                          planner: str | type[DefaultPlanner] | DefaultPlanner = DEFAULT_PLANNER) -> dict:
    """The whole plans dict for a fingerprint (nothing is written).

    ``cpu_speed``: a measured :class:`CpuSpeed` or GFLOP/s; None runs the probe (CPU plans only).
    ``architecture``: see :func:`synthunet.planning.planner.plan_configurations`; plans of another architecture
    than the U-Net read the default plans' data (data identifiers ``synthUNetPlans_{configuration}``).
    ``planner``: a registered planner name (``-pl``), class or instance (:mod:`synthunet.planning.planner`).
    ``gan``: the discriminator a GAN trainer adds to the estimates (see :class:`synthunet.planning.budget.Budget`).
    """
    planner = get_planner(planner)
    if data_identifier_prefix is None and architecture != DEFAULT_ARCHITECTURE:
        data_identifier_prefix = DEFAULT_PLANS
    speeds = None
    if device == "cpu":
        speeds = _speeds(cpu_speed, configurations)
    budget = Budget(device=device, memory_gb=cpu_memory_gb if device == "cpu" else gpu_memory_gb,
                    step_time_s=step_time_budget_s if device == "cpu" else None, speeds=speeds, gan=gan)
    configuration_blocks = planner.plan_configurations(fingerprint, budget, configurations, num_slices,
                                                       cpu_training_minutes, data_identifier_prefix or plans_name,
                                                       shared_identifiers, architecture)
    planned_for = {"device": device, "cpu_memory_gb": cpu_memory_gb, "gpu_memory_gb": gpu_memory_gb,
                   "step_time_budget_s": step_time_budget_s if device == "cpu" else None,
                   "probe_gflops": round(speeds[max(speeds)].gflops, 2) if speeds else None,
                   "probe": {f"{d}d": s.as_dict() for d, s in sorted(speeds.items(), reverse=True)} if speeds else None,
                   "torch_threads": training_threads() if device == "cpu" else None,
                   "cpu_training_minutes": cpu_training_minutes if device == "cpu" else None,
                   "gan": budget.gan or False, "architecture": architecture}
    if type(planner).__name__ != DEFAULT_PLANNER:  # the default is not recorded: plans stay as they were
        planned_for["planner"] = type(planner).__name__
    plans = {"dataset_name": fingerprint.get("dataset_name", ""), "plans_name": plans_name,
             "channel_names": {str(k): v for k, v in fingerprint["channel_names"].items()},
             "label_values": list(fingerprint.get("label_values", [])), "planned_for": planned_for}
    normalization = _normalization(fingerprint)
    if normalization is not None:
        plans["normalization"] = normalization
    plans["configurations"] = configuration_blocks
    return plans


def _shared(plans: dict) -> dict:
    return {name: (block["spacing"], block["data_identifier"]) for name, block in plans["configurations"].items()}


def plan_experiment(dataset: str | int, *, configurations: Sequence[str] = DEFAULT_CONFIGURATIONS,
                    device: str | None = None, gpu_memory_gb: float = 8.0, cpu_memory_gb: float = 8.0,
                    step_time_budget_s: float = 1.0, num_slices: int = 3, cpu_training_minutes: float = 10.0,
                    gan: str | bool | None = None, plans_name: str = DEFAULT_PLANS, gpu_plans: bool = True,
                    overwrite: bool = False, cpu_speed: CpuSpeed | float | None = None,
                    preprocessed_folder: Path | str | None = None, verbose: bool = False,
                    architecture: str = DEFAULT_ARCHITECTURE,
                    planner: str | type[DefaultPlanner] | DefaultPlanner = DEFAULT_PLANNER) -> dict:
    """Plan dataset ``dataset`` from its fingerprint; write ``{plans_name}.json`` and return the plans.

    ``device`` (None: cuda if available, else cpu) is the device the plans are for. When it is cpu and
    ``gpu_plans`` is set, ``{plans_name}_gpu.json`` is written too: the same dataset planned for a GPU of
    ``gpu_memory_gb``, reading the same preprocessed data (same spacing -> same data_identifier).
    An existing plans file is kept (and returned) unless ``overwrite``. ``architecture``: the network to plan
    (see :func:`plans_for_fingerprint`); use a plans name of its own (the CLI's default:
    ``synthUNetPlans_{architecture}``) so that its models never share a results folder with the U-Net's.
    ``planner``: see :func:`plans_for_fingerprint`.
    """
    from synthunet.dataset.identifiers import preprocessed_dataset_folder

    planner = get_planner(planner)  # an unknown name fails before anything is read

    folder = Path(preprocessed_folder) if preprocessed_folder else preprocessed_dataset_folder(dataset)
    target = folder / f"{plans_name}.json"
    if target.is_file() and not overwrite:
        if verbose:
            print(f"{target} exists; keeping it (pass --overwrite to plan again)")
        return read_plans(target)
    fingerprint_file = folder / FINGERPRINT_FILE
    if not fingerprint_file.is_file():
        raise FileNotFoundError(f"{fingerprint_file} does not exist; run synth_extract_fingerprint -d {dataset} first")
    fingerprint = json.loads(fingerprint_file.read_text())
    device = device or default_device()
    options = dict(configurations=configurations, gpu_memory_gb=gpu_memory_gb, cpu_memory_gb=cpu_memory_gb,
                   step_time_budget_s=step_time_budget_s, num_slices=num_slices,
                   cpu_training_minutes=cpu_training_minutes, gan=gan, architecture=architecture, planner=planner)
    plans = plans_for_fingerprint(fingerprint, device=device, cpu_speed=cpu_speed, plans_name=plans_name, **options)
    remove_stale_temporaries([target, folder / f"{plans_name}{GPU_PLANS_SUFFIX}.json"])  # a killed run's leftovers
    write_plans(plans, target)
    if verbose:
        print(f"wrote {target}")
    if device == "cpu" and gpu_plans:
        gpu_name = plans_name + GPU_PLANS_SUFFIX
        gpu = plans_for_fingerprint(fingerprint, device="cuda", plans_name=gpu_name, shared_identifiers=_shared(plans),
                                    **options)
        write_plans(gpu, folder / f"{gpu_name}.json")
        if verbose:
            print(f"wrote {folder / (gpu_name + '.json')} (the same data planned for a {gpu_memory_gb} GB GPU)")
    return plans
