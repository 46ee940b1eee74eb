"""Baselines as "trainers": ``synth_train 501 3d_fullres T1C 0 -tr Baseline_VoxelRegression``.

A baseline is fitted in closed form on the fold's training cases instead of trained by gradient descent,
then written as an ordinary model folder (plans.json whose architecture names the baseline, a checkpoint
with its buffers), so prediction, fold ensembling, validation and evaluation are the same as for a U-Net.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import torch

from synthunet.architectures.baselines import QuantileMapping, VoxelRegression, regression_sigmas_voxels
from synthunet.architectures.model_network import TISSUE_LEVELS
from synthunet.plans import ArchitecturePlan, as_plans
from synthunet.prediction.checkpoints import CHECKPOINT_FINAL, save_checkpoint
from synthunet.training.baseline_fitting import Case, fit_identity, fit_voxel_regression
from synthunet.training.experiment import ExperimentError
from synthunet.training.prior import fit_unpaired_matched_input, fit_unpaired_tissue_matching, training_cases
from synthunet.training.trainer import SynthTrainer


class BaselineTrainer(SynthTrainer):
    """Fit a closed-form baseline on the training cases of the fold; no epochs, no optimiser."""

    def fit(self, cases: Iterator[Case]) -> tuple[torch.nn.Module, dict]:
        """The fitted module and the plans ``architecture`` block that rebuilds it."""
        raise NotImplementedError

    def fit_on_experiment(self) -> tuple[torch.nn.Module, dict]:
        """:meth:`fit` on the fold's training cases (a baseline that reads them differently overrides this)."""
        return self.fit(training_cases(self.experiment))

    def run_training(self, continue_training: bool = False) -> None:
        if self.experiment.dimension != 3:
            raise ExperimentError(f"{type(self).__name__} works on 3D configurations (e.g. 3d_fullres), not "
                                  f"{self.experiment.configuration}")
        self.log.print(f"{type(self).__name__}: fitting on the training cases of fold {self.experiment.fold}")
        network, architecture = self.fit_on_experiment()
        configuration = self.experiment.configuration
        block = replace(self.experiment.config, architecture=ArchitecturePlan.from_dict(architecture))
        self.experiment.plans = self.experiment.plans.with_configuration(configuration, block)
        self.write_model_folder_files()
        self.network = network.to(self.device)
        save_checkpoint({"network_weights": self.network.state_dict(), "epoch": 0, "num_epochs": 0,
                         "trainer": type(self).__name__, "target": self.experiment.target,
                         "inputs": list(self.experiment.inputs), "configuration": self.experiment.configuration,
                         "residual_input": None}, self.output_folder / CHECKPOINT_FINAL)
        if self.final_validation:
            self.run_final_validation()

    def run_validation_only(self, checkpoint: str = CHECKPOINT_FINAL) -> dict:
        """Validate the fitted baseline: its architecture lives in the model folder's plans.json."""
        plans_path = self.experiment.model_folder / "plans.json"
        if not plans_path.is_file():
            raise ExperimentError(f"{plans_path} does not exist: fit the baseline first (without --val_only)")
        self.experiment.plans = as_plans(json.loads(plans_path.read_text()), str(plans_path))
        return super().run_validation_only(checkpoint)


class Baseline_Identity(BaselineTrainer):
    """The input sequence most correlated with the target (after Nyúl), mapped by least squares."""

    def fit(self, cases: Iterator[Case]) -> tuple[torch.nn.Module, dict]:
        model = fit_identity(cases, in_channels=len(self.experiment.inputs))
        self.log.print(f"chose input {self.experiment.inputs[int(model.channel)]}: target = "
                       f"{float(model.scale):.4f} * input + {float(model.offset):.4f}")
        return model, {"name": "identity_scale", "kwargs": {}}  # the channel is a buffer in the checkpoint


class Baseline_VoxelRegression(BaselineTrainer):
    """Degree-2 polynomial ridge regression from voxel intensities and local means at 2 and 6 mm."""

    def fit(self, cases: Iterator[Case]) -> tuple[torch.nn.Module, dict]:
        kwargs = {"sigmas_voxels": regression_sigmas_voxels(self.experiment.config.spacing), "degree": 2}
        model = fit_voxel_regression(VoxelRegression(3, len(self.experiment.inputs), **kwargs), cases)
        return model, {"name": "voxel_regression", "kwargs": kwargs}


class Baseline_HistogramMatching(BaselineTrainer):
    """Unpaired closed form (issue 19): the one input (``--inputs SOURCE``) mapped onto the target's intensity
    distribution, i.e. the mean quantile levels of the source over half of the fold's training cases sent to
    the target's over the other half. It never reads a source and a target of the same case."""

    unpaired = True
    extra_options = ("unpaired",)
    #: the map's level count when it is not QuantileMapping's default
    num_levels: int | None = None

    def fit_on_experiment(self) -> tuple[torch.nn.Module, dict]:
        experiment = self.experiment
        if len(experiment.inputs) != 1:
            raise ExperimentError(f"{type(self).__name__} maps one sequence onto another: pass --inputs SOURCE "
                                  f"(got {len(experiment.inputs)} inputs: {', '.join(experiment.inputs)})")
        model = self.fit_map(experiment)
        # the default level count is left out, so model folders fitted before tissue matching existed keep their plans
        kwargs = {} if self.num_levels is None else {"num_levels": self.num_levels}
        return model, {"name": "quantile_mapping", "kwargs": kwargs}

    def fit_map(self, experiment) -> QuantileMapping:
        return fit_unpaired_matched_input(QuantileMapping(3, 1), experiment, self.log.print)


class Baseline_TissueMatching(Baseline_HistogramMatching):
    """Unpaired closed form: the one input mapped onto the target by tissue matching (histogram matching, or a map
    that reorders the tissues where their edges say so; synthunet/training/tissue_matching.py), fitted without pairs
    as Baseline_HistogramMatching. The unpaired recipes' prior."""

    num_levels = TISSUE_LEVELS

    def fit_map(self, experiment) -> QuantileMapping:
        return fit_unpaired_tissue_matching(QuantileMapping(3, 1, num_levels=self.num_levels), experiment,
                                            self.log.print)


BASELINE_TRAINERS = {cls.__name__: cls for cls in (Baseline_Identity, Baseline_VoxelRegression)}
