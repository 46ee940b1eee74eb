"""``SynthPredictor``: trained model folders in, synthesised sequences out (API behind ``synth_predict``).

One model folder per target sequence. For a case, the model of its target is chosen (``target="auto"``:
the one sequence without a file), its inputs are preprocessed, every fold predicts (3D sliding window
or 2.5D with orientation fusion), the folds are averaged, and the result is written back in the input's
geometry and raw units. Preprocessing and export run in background processes (folders of cases:
:mod:`synthunet.inference.case_files`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from synthunet.dataset.dataset_json import DatasetDescription
from synthunet.dataset.image_io import Geometry
from synthunet.errors import InputError
from synthunet.inference.case_files import CaseFilePrediction
from synthunet.inference.case_preprocessing import CasePreprocessing, PlansPreprocessing
from synthunet.inference.export import revert_prediction
from synthunet.inference.layout import InputCase, InputLayoutError, detect_target, missing_channels
from synthunet.inference.time_budget import (Setting, candidates, choose_setting, estimate_seconds, seconds_per_window,
                                             windows_per_pass)
from synthunet.prediction.ensembling import VoxelStatistics
from synthunet.prediction.model_folder import DEFAULT_CHECKPOINT, ModelFolder, ModelFolderError, load_network
from synthunet.prediction.orientation_fusion import orientations_for, predict_volume_25d
from synthunet.prediction.sliding_window import (default_batch_size, inference_tile_size,
                                                 predict_volume_sliding_window, use_channels_last)
from synthunet.utilities.devices import resolve_device

logger = logging.getLogger(__name__)

#: inference windows: ``patch`` = the training patch (default); ``auto`` = whole-volume tiles (whole slices for 2.5d)
#: for U-Nets, faster on a CPU but not identical (instance normalisation sees the larger window; predict.md)
WINDOWS = ("auto", "patch")

NetworkLoader = Callable[[ModelFolder, "int | str", str, torch.device], nn.Module]
PreprocessingFactory = Callable[[ModelFolder], CasePreprocessing]


def default_preprocessing(model: ModelFolder) -> CasePreprocessing:
    """The model's own preprocessing (its plans, configuration, inputs and target)."""
    return PlansPreprocessing(model.plans, model.configuration, model.plans.channels, model.inputs, model.target,
                              model.export_landmarks_from)


class SynthPredictor(CaseFilePrediction):
    """Predict missing MRI sequences with trained synthUNet models (one model folder per target).

    >>> predictor = SynthPredictor(["/results/Dataset501_X/SynthTrainer__synthUNetPlans__3d_fullres__T1C"])
    >>> t1c = predictor.predict_from_arrays({"T1N": t1n, "T2W": t2w, "T2F": t2f}, geometry)
    """

    def __init__(self, model_folders: Path | str | Sequence[Path | str] | Mapping[str, Path | str],
                 folds: Sequence[int | str] | None = None, checkpoint: str = DEFAULT_CHECKPOINT,
                 device: str | torch.device = "auto", step_size: float = 0.5, use_mirroring: bool = True,
                 orientations: int = 9, batch_size: int | None = None, use_amp: bool = True,
                 network_loader: NetworkLoader | None = None,
                 preprocessing_factory: PreprocessingFactory | None = None, verbose: bool = False,
                 cascade: bool = False, cascade_models: Sequence[Path | str] = (), window: str = "patch",
                 time_budget_s: float | None = None, fixed: Sequence[str] = (),
                 report: Callable[[str], None] | None = None) -> None:
        if isinstance(model_folders, (str, Path)):
            model_folders = [model_folders]
        paths = list(model_folders.values()) if isinstance(model_folders, Mapping) else list(model_folders)
        if not paths:
            raise ModelFolderError("No model folder given")
        self.models: dict[str, ModelFolder] = {}
        for path in paths:
            model = ModelFolder.load(path)
            if model.target in self.models:
                raise ModelFolderError(f"Two model folders predict {model.target}: {self.models[model.target].path} "
                                       f"and {model.path}")
            self.models[model.target] = model
        first = next(iter(self.models.values()))
        for model in self.models.values():
            if model.dataset.channel_names != first.dataset.channel_names:
                raise ModelFolderError(f"{model.path} and {first.path} were trained on datasets with different "
                                       f"channels")
        if orientations not in (1, 3, 9):
            raise InputError(f"orientations must be 1, 3 or 9, got {orientations}")
        if window not in WINDOWS:
            raise InputError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        self.window = window
        #: seconds per case for the network part; the settings not in ``fixed`` ("folds", "mirroring",
        #: "orientations", "step_size") are then chosen per model on its first case (time_budget.py)
        self.time_budget_s = time_budget_s if time_budget_s and time_budget_s > 0 else None
        self.fixed = set(fixed)
        self._report = report or logger.info
        self._settings: dict[str, Setting] = {}
        self.dataset: DatasetDescription = first.dataset
        self.folds = None if folds is None else list(folds)
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.step_size = float(step_size)
        self.use_mirroring = bool(use_mirroring)
        self.orientations = int(orientations)
        self.batch_size = batch_size
        self.use_amp = use_amp
        self.verbose = verbose
        self._network_loader = network_loader or load_network
        self._preprocessing_factory = preprocessing_factory or default_preprocessing
        self._networks: dict[tuple[str, int | str], nn.Module] = {}  # (model path, fold) -> loaded network
        self._folds: dict[str, list[int | str]] = {}
        self._warned: set[str] = set()
        for target, model in self.models.items():  # fail early on missing folds / checkpoints
            if network_loader is not None and self.folds is not None:
                self._folds[str(model.path)] = self.folds  # custom loaders need no checkpoint files
            else:
                self._folds[str(model.path)] = model.resolve_folds(self.folds, checkpoint)
        self.cascade = bool(cascade)
        #: target -> models that can fill a missing input (the main models first, then ``cascade_models`` in order)
        self.fillers: dict[str, list[ModelFolder]] = {}
        for model in self.models.values():
            self.fillers.setdefault(model.target, []).append(model)
        for path in cascade_models:
            try:
                model = ModelFolder.load(path)
            except ModelFolderError as error:
                logger.info("Not a cascade candidate: %s", error)
                continue
            if model.dataset.channel_names != first.dataset.channel_names:
                continue
            known = {str(m.path.resolve()) for m in self.fillers.get(model.target, [])}
            if str(model.path.resolve()) not in known:
                self.fillers.setdefault(model.target, []).append(model)

    # ---- models ---------------------------------------------------------------------------------------
    @property
    def targets(self) -> list[str]:
        """The sequences this predictor can synthesise."""
        return sorted(self.models)

    def model_for(self, target: str) -> ModelFolder:
        for name, model in self.models.items():
            if name.lower() == target.lower():
                return model
        raise InputLayoutError(f"No trained model predicts {target} (trained targets: {', '.join(self.targets)})")

    def networks(self, target: str) -> list[nn.Module]:
        """The fold networks of a target's model (loaded once, then kept)."""
        return self.model_networks(self.model_for(target))

    def model_networks(self, model: ModelFolder) -> list[nn.Module]:
        """The fold networks of any model folder (a cascade model: the requested folds where it has them,
        else every fold it has)."""
        return [self._fold_network(model, fold) for fold in self._model_folds(model)]

    def _model_folds(self, model: ModelFolder) -> list[int | str]:
        key = str(model.path)
        if key not in self._folds:
            try:
                self._folds[key] = model.resolve_folds(self.folds, self.checkpoint)
            except ModelFolderError:
                self._folds[key] = model.resolve_folds(None, self.checkpoint)
        return self._folds[key]

    def _fold_network(self, model: ModelFolder, fold: int | str) -> nn.Module:
        """One fold's network, loaded on first use and then kept."""
        key = (str(model.path), fold)
        if key not in self._networks:
            self._networks[key] = self._network_loader(model, fold, self.checkpoint, self.device)
        return self._networks[key]

    def preprocessing(self, target: str) -> CasePreprocessing:
        return self._preprocessing_factory(self.model_for(target))

    # ---- the network part -------------------------------------------------------------------------------
    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(message)

    def _batch_size(self, model: ModelFolder) -> int | None:
        return self.batch_size or model.config.inference_batch_size

    def predict_preprocessed(self, data: np.ndarray | torch.Tensor, target: str, with_std: bool = False,
                             progress: bool = False, model: ModelFolder | None = None
                             ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fold-averaged prediction of preprocessed inputs ``(len(inputs), z, y, x)`` -> ``(z, y, x)`` mean
        (and standard deviation over folds and orientations when ``with_std``), preprocessed scale.
        ``model``: a model folder other than the target's own (a cascade model)."""
        model = model or self.model_for(target)
        data = torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32)
        if data.ndim != 4 or data.shape[0] != len(model.inputs):
            raise ValueError(f"expected ({len(model.inputs)}, z, y, x) inputs for {model.target} "
                             f"({', '.join(model.inputs)}), got shape {tuple(data.shape)}")
        tile_divisor = model.tile_divisor if self.window == "auto" else None
        setting = self._budgeted_setting(model, tuple(data.shape[1:]), tile_divisor)
        networks = self.model_networks(model)
        use_mirroring, orientation_count, step_size = setting.use_mirroring, setting.orientations, setting.step_size
        # the planned inference batch is sized for the training patch; tiles get a memory-aware batch
        batch_size = self.batch_size if tile_divisor is not None else self._batch_size(model)
        statistics = VoxelStatistics((1,) + tuple(data.shape[1:]))
        bar = tqdm(total=None, desc="patches", leave=False, disable=not progress)
        if model.is_25d:
            if orientation_count > 1 and sorted(model.slicing_axes) != [0, 1, 2]:
                self._warn_once(f"{model.path.name} was trained on slices along axes {model.slicing_axes} only; "
                                f"{orientation_count} orientations use all three")
            spacing = list(model.config.spacing)
            if orientation_count == 9 and max(spacing) > 1.01 * min(spacing):
                self._warn_once(f"{model.path.name}: the 2.5d spacing {spacing} is anisotropic; the 45-degree "
                                f"orientations rotate in voxel space and see sheared anatomy")
            orientations = orientations_for(orientation_count, model.slicing_axes[0])
            predict_volume_25d(networks, data, model.num_slices, model.patch_size, orientations, step_size,
                               use_mirroring, batch_size, self.device, self.use_amp,
                               statistics=statistics, progress=bar.update, tile_divisor=tile_divisor)
        else:
            for network in networks:
                prediction = predict_volume_sliding_window(network, data, model.patch_size, step_size,
                                                           use_mirroring, batch_size, self.device,
                                                           use_amp=self.use_amp, progress=bar.update,
                                                           tile_divisor=tile_divisor)
                statistics.add(prediction[:1])
        bar.close()
        return statistics.mean()[0], (statistics.std()[0] if with_std else None)

    def chosen_setting(self, target: str) -> Setting | None:
        """The folds, mirroring, orientations and step used for ``target`` (``None`` before its first case)."""
        return self._settings.get(str(self.model_for(target).path))

    def _budgeted_setting(self, model: ModelFolder, shape: tuple[int, ...],
                          tile_divisor: Sequence[int] | None) -> Setting:
        """The model's folds, mirroring, orientations and step: as given, or chosen from the time budget on its first
        case (the network of its first fold is timed on one batch of windows)."""
        key = str(model.path)
        if key in self._settings:
            return self._settings[key]
        given = Setting(tuple(self._model_folds(model)), self.use_mirroring, self.orientations if model.is_25d else 1,
                        self.step_size)
        if self.time_budget_s is None:
            self._settings[key] = given
            return given
        options = candidates(given.folds, [given.use_mirroring] if "mirroring" in self.fixed else [True, False],
                             [given.orientations] if "orientations" in self.fixed or not model.is_25d else [9, 3, 1],
                             [given.step_size] if "step_size" in self.fixed else [0.5, 0.75])
        if "folds" in self.fixed:
            options = [o for o in options if len(o.folds) == len(given.folds)]
        axial = model.slicing_axes[0] if model.is_25d else 0
        windows = {(o.orientations, o.step_size): windows_per_pass(shape, model.patch_size, o.step_size, model.is_25d,
                                                                   o.orientations, axial, tile_divisor)
                   for o in options}
        window = model.patch_size if tile_divisor is None or model.is_25d else inference_tile_size(
            shape, model.patch_size, tile_divisor)
        network = self._fold_network(model, given.folds[0])
        channels_last = use_channels_last(network, self.device, len(window))
        batch = (self.batch_size if tile_divisor is not None else self._batch_size(model)) or default_batch_size(
            ([1] if model.is_25d else []) + list(window), self.device, channels_last=channels_last)
        seconds = seconds_per_window(network, (model.network_input_channels, *window), batch, self.device)
        chosen, estimate, fits = choose_setting(options, windows, seconds, model.is_25d, self.time_budget_s)
        if chosen == options[0]:
            self._report(f"{model.target}: {chosen.describe(model.is_25d)}: about {estimate:.0f} s of network time "
                         f"per case, within the time budget of {self.time_budget_s:.0f} s")
        else:
            full = estimate_seconds(options[0], windows, seconds, model.is_25d)
            self._report(f"{model.target}: time budget {self.time_budget_s:.0f} s per case -> "
                         f"{chosen.describe(model.is_25d)}: about {estimate:.0f} s of network time per case "
                         f"({options[0].describe(model.is_25d)} would take about {full:.0f} s; --time_budget_s 0 "
                         f"runs it)" + ("" if fits else "; nothing fits the budget, so the fastest setting is used"))
        self._folds[key] = list(chosen.folds)
        self._settings[key] = chosen
        return chosen

    # ---- missing inputs (cascade, seed 001 section IV-E) ---------------------------------------------------
    def cascade_steps(self, available: Sequence[str], target: str) -> tuple[list[ModelFolder], list[str]]:
        """The models that synthesise the target model's missing inputs from ``available`` (in the order to
        run them; a filled input may feed the next model), and the inputs no model can fill."""
        have = {c for c in available if c != target}
        needed = [c for c in self.model_for(target).inputs if c not in have]
        steps: list[ModelFolder] = []
        progress = True
        while needed and progress:
            progress = False
            for missing in list(needed):
                for candidate in self.fillers.get(missing, []):
                    if target not in candidate.inputs and all(c in have for c in candidate.inputs):
                        steps.append(candidate)
                        have.add(missing)
                        needed.remove(missing)
                        progress = True
                        break
        return steps, needed

    def missing_input_message(self, case_id: str, available: Sequence[str], target: str) -> str:
        """Why a case cannot be predicted: the missing inputs and the model folders that would fill them."""
        model = self.model_for(target)
        missing = [c for c in model.inputs if c not in available]
        parts = []
        for channel in missing:
            fillers = self.fillers.get(channel, [])
            usable = [m for m in fillers if all(c in available for c in m.inputs) and target not in m.inputs]
            if usable:
                parts.append(f"{channel} can be synthesised first by {', '.join(str(m.path) for m in usable)} "
                             f"(pass --cascade)")
            elif fillers:
                parts.append(f"{channel}: the models for it ({', '.join(str(m.path) for m in fillers)}) need "
                             f"inputs the case lacks too")
            else:
                parts.append(f"no trained model predicts {channel}")
        return (f"Case {case_id} lacks {', '.join(missing)}, which the {target} model needs as input (inputs: "
                f"{', '.join(model.inputs)}); " + "; ".join(parts))

    def detect_cascade_target(self, case: InputCase) -> str:
        """``--target auto`` for a case that misses several sequences: the missing sequence with a model that
        the other missing sequences feed (no other missing sequence's model needs it as input)."""
        missing = missing_channels(case, self.dataset)
        if len(missing) <= 1:
            return detect_target(case, self.dataset, self.targets)
        trained = [c for c in missing if c in self.models]
        finals = [c for c in trained if not any(c in self.model_for(o).inputs for o in trained if o != c)]
        if len(finals) != 1:
            raise InputLayoutError(
                f"Case {case.case_id} misses {', '.join(missing)}; --cascade with --target auto cannot tell which of "
                f"them is the one to write (candidates: {', '.join(finals or trained) or 'none'}). Pass --target.")
        return finals[0]

    def _auto_target(self, case: InputCase) -> str:
        """``--target auto``: the one missing sequence; with --cascade (or to explain why --cascade is needed)
        see :meth:`detect_cascade_target`."""
        if self.cascade:
            return self.detect_cascade_target(case)
        try:
            return detect_target(case, self.dataset, self.targets)
        except InputLayoutError as error:
            if len(missing_channels(case, self.dataset)) < 2:
                raise
            try:
                target = self.detect_cascade_target(case)
            except InputLayoutError:
                raise error from None
            available = [c for c in case.files if c != target]
            message = self.missing_input_message(case.case_id, available, target)  # name every missing sequence
            raise InputLayoutError(message.replace(f"Case {case.case_id} lacks ",
                                                   f"Case {case.case_id} misses {target} (to predict) and ", 1)) from None

    def cascade_fill(self, images: dict[str, np.ndarray], geometry: Geometry, steps: Sequence[ModelFolder],
                     progress: bool = False) -> dict[str, np.ndarray]:
        """Run the cascade models in order; each prediction (raw units, input grid) becomes an input."""
        images = dict(images)
        for model in steps:
            preprocessing = self._preprocessing_factory(model)
            data, properties = preprocessing.preprocess({c: a for c, a in images.items() if c != model.target},
                                                        geometry)
            mean, _ = self.predict_preprocessed(data, model.target, progress=progress, model=model)
            images[model.target], _ = revert_prediction(mean, None, properties, preprocessing, geometry)
            logger.info("cascade: synthesised %s with %s", model.target, model.path.name)
        return images

    # ---- arrays -----------------------------------------------------------------------------------------
    def _target_for(self, available: Sequence[str], target: str | None, case_id: str) -> str:
        if target is not None and target.lower() != "auto":
            return self.model_for(target).target
        case = InputCase(case_id, {name: Path(name) for name in available}, "raw")
        return detect_target(case, self.dataset, self.targets)

    def predict_from_arrays(self, images: Mapping[str, np.ndarray], geometry: Geometry, target: str | None = None,
                            return_uncertainty: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Synthesise ``target`` (default: the one dataset channel missing from ``images``).

        ``images``: channel name -> raw ``(z, y, x)`` array, all on ``geometry``. Returns the prediction
        ``(z, y, x)`` float32 in raw units on the same grid (and its uncertainty when asked).
        """
        names = {name.lower(): name for name in self.dataset.channels}
        unknown = [name for name in images if name.lower() not in names]
        if unknown:
            raise InputError(f"Unknown channel(s) {unknown}; the model's channels are {self.dataset.channels}")
        images = {names[name.lower()]: np.asarray(array, dtype=np.float32) for name, array in images.items()}
        for name, array in images.items():
            if tuple(array.shape) != tuple(geometry.shape):
                raise InputError(f"{name} has shape {array.shape}, but the geometry says {geometry.shape}")
        target = self._target_for(list(images), target, "arrays")
        images = {name: array for name, array in images.items() if name != target}  # never read the target
        steps, unfilled = self.cascade_steps(list(images), target)
        if steps or unfilled:
            if unfilled or not self.cascade:
                raise InputLayoutError(self.missing_input_message("arrays", list(images), target))
            images = self.cascade_fill(images, geometry, steps)
        preprocessing = self.preprocessing(target)
        data, properties = preprocessing.preprocess(images, geometry)
        mean, std = self.predict_preprocessed(data, target, with_std=return_uncertainty)
        prediction, uncertainty = revert_prediction(mean, std, properties, preprocessing, geometry)
        return (prediction, uncertainty) if return_uncertainty else prediction
