"""Tumour segmentation with a trained segmenter (``SegmentationTrainer``): the API behind ``synth_segment``.

For each case: read every input sequence -> preprocess exactly as in training (crop to the brain, Nyúl +
range scaling, resample) -> sliding window per fold (Gaussian-weighted logits, optional mirroring) ->
softmax -> mean over folds -> each class probability resampled back (linear, as nnU-Net does for
probabilities) and pasted into the input frame with :func:`revert_preprocessing` (0 outside the brain and
the crop) -> argmax -> ``{case}.nii.gz`` uint8 label map in the input geometry, written atomically.

A sequence given as a constant image (a zero-filled file: a missing input) cannot be Nyúl-standardised;
it reaches the network as zeros, which is what an absent channel is after preprocessing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from synthunet.dataset.image_io import Geometry, remove_stale_temporaries, write_image
from synthunet.errors import InputError
from synthunet.inference.case_preprocessing import read_and_preprocess
from synthunet.inference.checks import check_before_writing, raise_problems
from synthunet.inference.layout import InputLayoutError, list_input_cases
from synthunet.inference.pipeline import run_case_pipeline
from synthunet.inference.workers import make_executor
from synthunet.plans import Plans, as_plans
from synthunet.prediction.checkpoints import load_trained_segmenter
from synthunet.prediction.model_folder import DEFAULT_CHECKPOINT, ModelFolder, ModelFolderError
from synthunet.prediction.probabilities import pad_classes, predict_probabilities
from synthunet.utilities.devices import resolve_device

logger = logging.getLogger(__name__)

SegmenterLoader = Callable[["SegmentationModelFolder", "int | str", str, torch.device], nn.Module]


@dataclass
class SegmentationModelFolder(ModelFolder):
    """A segmenter's model folder (``model_info.json`` with ``"task": "segmentation"``)."""

    def check(self) -> None:
        """As :meth:`ModelFolder.check`, for a segmenter: ``"task": "segmentation"``, and its inputs (it has no
        target channel) are channels of dataset.json."""
        if self.model_info.get("task") != "segmentation":
            raise ModelFolderError(f"{self.path} is a synthesis model (target {self.model_info.get('target')}), not a "
                                   f"segmenter; train one with synth_train DATASET 3d_fullres seg FOLD "
                                   f"-tr SegmentationTrainer")
        self._check_files("inputs", self.inputs)

    @property
    def num_classes(self) -> int:
        return int(self.model_info["num_classes"])


def load_segmenter(model: SegmentationModelFolder, fold: int | str, checkpoint: str = DEFAULT_CHECKPOINT,
                   device: torch.device | str = "cpu") -> nn.Module:
    """The trained segmenter of one fold in eval mode on ``device`` (``weights_only`` loading)."""
    if not model.checkpoint_path(fold, checkpoint).is_file():
        raise ModelFolderError(f"Checkpoint {model.checkpoint_path(fold, checkpoint)} does not exist")
    return load_trained_segmenter(model.path, fold, device, checkpoint)[0]


@dataclass
class SegmentationPreprocessing:
    """The segmenter's preprocessing (training's, via the preprocessing package) and the way back."""

    plans: Plans | Mapping
    configuration: str
    channels: list[str]
    inputs: list[str]

    def preprocess(self, images: Mapping[str, np.ndarray], geometry: Geometry) -> tuple[np.ndarray, dict]:
        """Raw images -> ``(len(inputs), z', y', x')`` network inputs and properties (``missing_inputs``:
        the constant sequences, given as zeros)."""
        from synthunet.preprocessing.inference import preprocess_case_for_inference

        absent = [c for c in self.inputs if c not in images]
        if absent:
            raise InputError(f"input sequence(s) {', '.join(absent)} missing (a missing sequence can be given as "
                             f"a zero-filled image)")
        constant = [c for c in self.inputs if not np.ptp(images[c]) > 0]
        names = [c for c in self.inputs if c not in constant]
        if not names:
            raise InputError("every input sequence is constant (e.g. all zero); there is no brain to segment")
        data, properties = preprocess_case_for_inference([images[c] for c in names], geometry, self.plans,
                                                         self.configuration, names)
        properties["missing_inputs"] = constant
        selected = data[[self.channels.index(c) for c in self.inputs]]  # absent channels are zeros
        return np.ascontiguousarray(selected, dtype=np.float32), properties

    @cached_property
    def probability_plans(self) -> Plans:
        """The plans with linear resampling for the class probabilities (nnU-Net: order 1, order_z 0), made once."""
        plans = as_plans(self.plans)
        block = plans.configuration(self.configuration)
        linear = replace(block.resampling, order_data=1, order_z_data=0)
        return plans.with_configuration(self.configuration, replace(block, resampling=linear))

    def revert(self, probabilities: np.ndarray, properties: dict) -> np.ndarray:
        """``(K, z', y', x')`` probabilities -> ``(z, y, x)`` uint8 labels in the input geometry (0 outside the
        brain)."""
        from synthunet.preprocessing.inference import revert_preprocessing

        plans = self.probability_plans
        restored = np.stack([revert_preprocessing(p, properties, plans, self.configuration, denormalize=False)
                             for p in np.asarray(probabilities, dtype=np.float32)])
        return restored.argmax(0).astype(np.uint8)


def export_segmentation(probabilities: np.ndarray, properties: dict, preprocessing: SegmentationPreprocessing,
                        geometry: Geometry, output_file: Path | str) -> Path:
    """Revert a case's probabilities to a label map and write it with the input's geometry (atomically)."""
    labels = preprocessing.revert(probabilities, properties)
    if tuple(labels.shape) != tuple(geometry.shape):
        raise RuntimeError(f"Reverting the preprocessing gave shape {labels.shape}, but the input has {geometry.shape}")
    write_image(labels, geometry, output_file)
    return Path(output_file)


class SegmentationPredictor:
    """Segment tumours with a trained segmenter, averaging the softmax of its folds.

    >>> predictor = SegmentationPredictor("/results/Dataset501_X/SegmentationTrainer__synthUNetPlans__3d_fullres__seg")
    >>> labels = predictor.predict_from_arrays({"T1N": t1n, "T1C": t1c, "T2W": t2w, "T2F": t2f}, geometry)
    """

    def __init__(self, model_folder: Path | str, folds: Sequence[int | str] | None = None,
                 checkpoint: str = DEFAULT_CHECKPOINT, device: str | torch.device = "auto", step_size: float = 0.5,
                 use_mirroring: bool = True, batch_size: int | None = None, use_amp: bool = True,
                 network_loader: SegmenterLoader | None = None) -> None:
        self.model = SegmentationModelFolder.load(model_folder)
        self.folds = self.model.resolve_folds(folds, checkpoint)
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.step_size = float(step_size)
        self.use_mirroring = bool(use_mirroring)
        self.batch_size = batch_size or self.model.config.inference_batch_size
        self.use_amp = use_amp
        self._loader = network_loader or load_segmenter
        self._networks: list[nn.Module] | None = None
        self.preprocessing = SegmentationPreprocessing(self.model.plans, self.model.configuration,
                                                       self.model.plans.channels, self.model.inputs)

    @property
    def inputs(self) -> list[str]:
        return self.model.inputs

    def networks(self) -> list[nn.Module]:
        """The fold networks (loaded once)."""
        if self._networks is None:
            self._networks = [self._loader(self.model, fold, self.checkpoint, self.device) for fold in self.folds]
        return self._networks

    def predict_preprocessed(self, data: np.ndarray | torch.Tensor, progress: bool = False) -> np.ndarray:
        """``(len(inputs), z, y, x)`` preprocessed inputs -> ``(K, z, y, x)`` fold-averaged probabilities."""
        data = torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32)
        if data.ndim != 4 or data.shape[0] != len(self.inputs):
            raise ValueError(f"expected ({len(self.inputs)}, z, y, x) inputs ({', '.join(self.inputs)}), got shape "
                             f"{tuple(data.shape)}")
        bar = tqdm(total=None, desc="patches", leave=False, disable=not progress)
        probabilities = predict_probabilities(self.networks(), data, self.model.patch_size, self.step_size,
                                              self.use_mirroring, self.batch_size, self.device, self.use_amp,
                                              progress=bar.update)
        bar.close()
        return pad_classes(probabilities, self.model.num_classes).numpy()

    def predict_from_arrays(self, images: Mapping[str, np.ndarray], geometry: Geometry) -> np.ndarray:
        """Channel name -> raw ``(z, y, x)`` array (all on ``geometry``) -> ``(z, y, x)`` uint8 label map."""
        data, properties = self.preprocessing.preprocess(images, geometry)
        return self.preprocessing.revert(self.predict_preprocessed(data), properties)

    def plan_cases(self, input_folder: Path, output_folder: Path) -> list[tuple[str, dict[str, Path], Path]]:
        """(case, files of the inputs, output file) for every case; one error lists every case lacking an input."""
        layout, cases = list_input_cases(input_folder, self.model.dataset)
        ending = self.model.dataset.file_ending if layout == "raw" else ".nii.gz"
        problems = [f"{case.case_id} lacks {', '.join(c for c in self.inputs if c not in case.files)}"
                    for case in cases if any(c not in case.files for c in self.inputs)]
        if problems:
            raise InputLayoutError(f"The segmenter needs every input ({', '.join(self.inputs)}) of every case; a "
                                   f"missing sequence can be given as a zero-filled image. " + "; ".join(problems[:10])
                                   + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
        return [(case.case_id, {c: case.files[c] for c in self.inputs}, output_folder / f"{case.case_id}{ending}")
                for case in cases]

    def predict_from_files(self, input_folder: Path | str, output_folder: Path | str, continue_prediction: bool = False,
                           num_processes_preprocessing: int = 2, num_processes_export: int = 2,
                           progress: bool = True) -> list[Path]:
        """Segment every case of ``input_folder`` (raw or BraTS layout) into ``output_folder/{case}.nii.gz``.

        ``num_processes_*`` = 0 runs that stage in this process. With ``continue_prediction`` cases whose
        label map exists are skipped (files are written atomically, so an existing file is complete).
        """
        input_folder, output_folder = Path(input_folder), Path(output_folder)
        if output_folder.resolve() == input_folder.resolve():
            raise InputError("The output folder must differ from the input folder")
        jobs = self.plan_cases(input_folder, output_folder)
        all_outputs = [job[2] for job in jobs]
        if continue_prediction:
            jobs = [job for job in jobs if not job[2].is_file()]
        with make_executor(num_processes_preprocessing) as pre_pool, make_executor(num_processes_export) as export_pool:
            # every input file and the outputs, before the first label map is written
            raise_problems(check_before_writing([(job[0], job[1]) for job in jobs], output_folder,
                                                [job[2] for job in jobs], pre_pool),
                           InputLayoutError, f"in {input_folder} (output {output_folder})")
            remove_stale_temporaries(all_outputs)  # left by a killed earlier run
            output_folder.mkdir(parents=True, exist_ok=True)

            def predict(job, data: np.ndarray, properties: dict) -> np.ndarray:
                if properties.get("missing_inputs"):
                    logger.warning("Case %s: %s constant (zero-filled?): given to the segmenter as zeros",
                                   job[0], ", ".join(properties["missing_inputs"]))
                return self.predict_preprocessed(data)

            return run_case_pipeline(
                jobs, submit_preprocessing=lambda job: pre_pool.submit(read_and_preprocess, job[0], job[1],
                                                                       self.preprocessing),
                predict=predict,
                submit_export=lambda job, probabilities, properties, geometry: export_pool.submit(
                    export_segmentation, probabilities, properties, self.preprocessing, geometry, job[2]),
                num_processes_preprocessing=num_processes_preprocessing, num_processes_export=num_processes_export,
                progress=progress, describe=lambda job: job[0])
