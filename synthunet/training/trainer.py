"""``SynthTrainer``: the training loop shared by every recipe.

Variants (synthunet/training/trainers/) override :meth:`SynthTrainer.compute_loss` and, for adversarial
recipes, :meth:`SynthTrainer.train_step`. Everything else lives in small modules: data loading
(``data/``), losses (``losses/``), checkpoints, logging/plots (``progress``), the optimiser and
schedule (``optim``), full-volume validation (``validation``) and DDP (``distributed``).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from synthunet.architectures.model_network import build_synthesis_network, inner_network, input_channel_index
from synthunet.dataset.image_io import remove_stale_temporaries
from synthunet.evaluation.ssim import ssim_map
from synthunet.plans import as_plans
from synthunet.prediction.checkpoints import (CHECKPOINT_BEST, CHECKPOINT_FINAL, CHECKPOINT_LATEST, CHECKPOINT_PREVIOUS,
                                              CheckpointError, load_checkpoint, load_network_weights, save_checkpoint)
from synthunet.prediction.model_folder import MODEL_INFO_FILE
from synthunet.training import distributed
from synthunet.training.data import (AugmentationParams, BatchAugmenter, CaseCache, PatchSampler, TrainingBatches,
                                     ValidationPatches, WaitTimer, training_iterator)
from synthunet.training.data.augmentation import without_intensity_augmentation
from synthunet.training.experiment import Experiment, ExperimentError
from synthunet.training.losses import l1_loss
from synthunet.training.optim import LRSchedule, build_optimizer
from synthunet.training.prior import fit_prior
from synthunet.training.progress import TrainingLog
from synthunet.training.rng_state import capture_rng_state, restore_rng_state
from synthunet.training.weight_average import WeightAverage
from synthunet.utilities.atomic_io import write_json_atomic
from synthunet.utilities.threads import configure_cpu_threads, default_num_workers

#: data range of the normalised intensities used for the validation SSIM
DATA_RANGE = 1.0
#: seed of the fixed validation patch set (plus the fold number)
VALIDATION_PATCH_SEED = 1234


#: checkpoint entries resuming a training needs (recipes check their own extra entries)
RESUME_KEYS = ("network_weights", "optimizer_state", "scheduler_state", "grad_scaler_state", "epoch", "best_metric",
               "logging", "rng_state")


class SynthTrainer:
    """Train one model (configuration, target, fold) with the L1 loss over the whole patch.

    Args:
        experiment: the resolved run (:meth:`Experiment.resolve`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a :class:`torch.device`.
        num_epochs: overrides the plans' ``training.num_epochs``.
        num_workers: data worker processes (default: :func:`default_num_workers`, ``$SYNTHUNET_NUM_WORKERS``).
        residual_input: an input channel name; the network then predicts target - that channel (seed 002).
        final_validation: run the full-volume validation after training.
        rank, world_size: DDP process index and count (set by :mod:`synthunet.training.distributed`).
        **options: recipe-specific options named in ``extra_options`` (e.g. ``vgg_weights``).
    """

    #: options (keyword arguments / CLI flags) this recipe accepts beyond the common ones
    extra_options: tuple[str, ...] = ()
    #: augmentation ranges and probabilities
    augmentation = AugmentationParams()
    #: an input channel name to keep un-augmented in ``batch["reference"]`` (central slice for 2.5D)
    reference_input: str | None = None
    #: True for recipes that predict label maps (TARGET ``seg``) instead of a sequence
    segmentation: bool = False
    #: True for recipes that train without pairs (``synth_train --unpaired`` accepts only these); their prior, if the
    #: plans name one, is fitted without reading a source and a target of the same case
    unpaired: bool = False
    #: the validation metric (a log key, higher is better) that decides ``checkpoint_best``, and its name in the log
    best_metric_key: str = "val_ssim"
    best_metric_name: str = "validation SSIM"
    #: > 0: keep an exponential moving average of the network's weights with this decay (updated after every
    #: training step) and save it as ``checkpoint_final``'s weights; 0: the final weights are the last step's
    ema_decay: float = 0.0

    def __init__(self, experiment: Experiment, device: str | torch.device = "cpu", num_epochs: int | None = None,
                 num_workers: int | None = None, residual_input: str | None = None, final_validation: bool = True,
                 rank: int = 0, world_size: int = 1, **options) -> None:
        unknown = sorted(set(options) - set(self.extra_options))
        if unknown:
            raise ExperimentError(f"{type(self).__name__} does not take option(s) {', '.join(unknown)}"
                                  + (f"; it takes {', '.join(self.extra_options)}" if self.extra_options else ""))
        if experiment.is_segmentation != self.segmentation:
            raise ExperimentError(
                f"TARGET seg trains a tumour segmenter: use -tr SegmentationTrainer, not {type(self).__name__}"
                if experiment.is_segmentation else
                f"{type(self).__name__} trains a tumour segmenter: its TARGET is 'seg', not {experiment.target}")
        self.options = options
        self.experiment = experiment
        self.config = experiment.config
        self.training = self.config.training
        self.device = torch.device(device)
        self.rank, self.world_size = int(rank), int(world_size)
        self.is_main = self.rank == 0
        self.epochs_from_command_line = num_epochs is not None
        self.num_epochs = int(num_epochs if num_epochs is not None else self.training.num_epochs)
        if self.num_epochs < 1:
            raise ExperimentError(f"The number of epochs must be at least 1, got {self.num_epochs}")
        self.iterations_per_epoch = self.training.iterations_per_epoch
        self.val_iterations = self.training.val_iterations_per_epoch
        self.batch_size = max(1, round(self.config.batch_size / self.world_size))
        self.num_workers = default_num_workers(self.world_size) if num_workers is None else int(num_workers)
        self.final_validation = final_validation
        self.residual_input = residual_input
        if residual_input:
            residual_input = next((c for c in experiment.inputs if c.lower() == residual_input.lower()), None)
            if residual_input is None:
                raise ExperimentError(f"--residual_input {self.residual_input!r} is not one of the inputs "
                                      f"{experiment.inputs}")
            self.residual_input = residual_input
        # autocast on CUDA only (unless the plans say "mixed_precision": false), never on the CPU
        self.amp = self.device.type == "cuda" and self.training.mixed_precision
        self.output_folder = experiment.output_folder
        self.log = TrainingLog(self.output_folder, enabled=self.is_main)
        self.current_epoch = 0
        self.best_metric = -math.inf
        self.network: nn.Module | None = None
        self.weight_average: WeightAverage | None = None
        self._training_batches: Iterator[dict] | None = None

    # ================================================================ setup
    def initialize(self) -> None:
        """Build network, optimiser, schedule, gradient scaler, recipe extras and the data pipeline."""
        if self.device.type == "cpu":
            configure_cpu_threads(self.num_workers)
        network = self.build_network()
        self.network = self.wrap_ddp(network.to(self.device))
        self.optimizer = build_optimizer(self.network.parameters(), self.training)
        self.schedule = LRSchedule([self.optimizer], self.training.initial_lr, self.num_epochs,
                                   self.training.lr_schedule, self.training.poly_exponent)
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.weight_average = WeightAverage(network, self.ema_decay) if self.ema_decay > 0 else None
        self.initialize_recipe()
        self.initialize_data()

    def build_network(self) -> nn.Module:
        """The generator from the plans, with its prior fitted on the fold's training cases if the plans name one."""
        network = build_synthesis_network(self.config, self.experiment.inputs, self.experiment.num_slices,
                                          self.residual_input)
        if fit_prior(network, self.experiment, self.log.print, unpaired=self.unpaired):  # when the plans name one
            # the prior was fitted on un-augmented intensities; at inference inputs are never augmented
            self.augmentation = without_intensity_augmentation(self.augmentation)
            self.log.print("intensity augmentation off: the network learns a correction to a fitted prior")
        return network

    def initialize_recipe(self) -> None:
        """Hook for recipes: build loss modules, discriminators, extra optimisers."""

    def wrap_ddp(self, module: nn.Module) -> nn.Module:
        """Wrap in DistributedDataParallel when running on several processes."""
        return distributed.wrap(module, self.device) if self.world_size > 1 else module

    def initialize_data(self) -> None:
        """Samplers for the fold's cases, the background training stream and the fixed validation patches."""
        experiment, config = self.experiment, self.config
        train_cases, val_cases = experiment.fold_cases()
        patch_size = list(config.patch_size)
        cases = CaseCache(experiment.data_folder)
        common = dict(input_indices=experiment.input_indices, target_index=experiment.target_index,
                      patch_size=patch_size, num_slices=experiment.num_slices,
                      oversample_tumour=self.training.oversample_tumour,
                      slicing_axes=list(config.slicing_axes) if experiment.dimension == 2 else None)
        self.train_sampler = PatchSampler(cases, train_cases, **common)
        self.val_sampler = PatchSampler(CaseCache(experiment.data_folder), val_cases, **common)
        reference = (input_channel_index(experiment.inputs, self.reference_input, experiment.num_slices)
                     if self.reference_input else None)
        self.augmenter = BatchAugmenter(patch_size, has_target=True, reference_channel=reference)
        self.train_stream = self.training_stream(self.train_sampler)
        seed = VALIDATION_PATCH_SEED + (experiment.fold if isinstance(experiment.fold, int) else 99)
        self.validation_patches = ValidationPatches(self.val_sampler, self.batch_size, self.val_iterations, seed,
                                                    reference)
        self.wait_timer = WaitTimer()

    def training_stream(self, sampler: PatchSampler) -> TrainingBatches:
        """The endless training stream over ``sampler``. On a GPU the workers send float16 samples and the draws,
        and :meth:`augment` applies them there; on the CPU the workers apply :attr:`augmenter` themselves (same
        code, on the cores the training process leaves them)."""
        return TrainingBatches(sampler, self.batch_size, augmentation_params=self.augmentation,
                               dtype=torch.float16 if self.device.type == "cuda" else torch.float32,
                               augmenter=self.augmenter if self.device.type == "cpu" else None)

    def training_batches(self) -> Iterator[dict]:
        """The training batch iterator, started lazily (after a resume restored the RNG states)."""
        if self._training_batches is None:
            self._training_batches = training_iterator(self.train_stream, self.num_workers,
                                                       pin_memory=self.device.type == "cuda")
        return self._training_batches

    # ================================================================ losses and steps
    def compute_loss(self, prediction: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The supervised loss of a batch (float32): ``(loss, {part name: value})``. Recipes override this.

        ``batch`` holds ``data`` (inputs), ``target`` and ``seg`` (-1 outside the brain, 0 healthy, >0 tumour),
        all on the device. The base recipe: L1 over every voxel of the patch (seed 000 eq. 1). Outside the
        brain the target is 0, which the network learns trivially, so no mask is needed at inference.
        """
        return l1_loss(prediction, batch["target"]), {}

    def autocast(self):
        """Mixed precision on CUDA; a no-op everywhere else."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, module: nn.Module,
                       scaler: torch.amp.GradScaler) -> None:
        """Backward, unscale, clip the gradient norm (plans ``grad_clip``), step."""
        scaler.scale(loss).backward()
        clip = self.training.grad_clip
        if clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), float(clip))
        scaler.step(optimizer)
        scaler.update()

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch; returns detached losses (``loss`` and its parts)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            prediction = self.network(batch["data"])
        loss, parts = self.compute_loss(prediction.float(), batch)
        self.optimizer_step(loss, self.optimizer, self.network, self.grad_scaler)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Loss and, inside the brain, SSIM-map and absolute-error sums plus the voxel count."""
        with self.autocast():  # the unwrapped network: no DDP collectives on the main process alone
            prediction = inner_network_with_residual(self.network)(batch["data"])
        prediction = prediction.float()
        loss, _ = self.compute_loss(prediction, batch)
        brain = (batch["seg"] >= 0).float()
        similarity = ssim_map(prediction, batch["target"], data_range=DATA_RANGE)
        return {"loss": loss, "ssim_sum": (similarity * brain).sum(),
                "ae_sum": ((prediction - batch["target"]).abs() * brain).sum(), "voxels": brain.sum()}

    def to_device(self, batch: dict) -> dict:
        """Every tensor of ``batch`` (nested dicts too) on the training device."""
        non_blocking = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=non_blocking) if torch.is_tensor(v)
                else self.to_device(v) if isinstance(v, dict) else v for k, v in batch.items()}

    def augment(self, batch: dict) -> dict:
        """Apply a training batch's augmentation draws on the device (:class:`BatchAugmenter`), unless the
        workers did (CPU training); recipes whose batches hold several parts (unpaired) override this."""
        return self.augmenter(batch) if "augmentation" in batch else batch

    def next_training_batch(self, batches: Iterator[dict]) -> dict:
        """The next augmented training batch on the device; waiting for the workers counts as data wait."""
        return self.augment(self.to_device(self.wait_timer.fetch(batches)))

    # ================================================================ epochs
    def on_epoch_start(self, epoch: int) -> None:
        """Set the learning rate for ``epoch``; recipes with stages switch here."""
        self.log.log(epoch, "lr", self.schedule.step(epoch))

    def train_epoch(self, epoch: int) -> None:
        self.network.train()
        self.wait_timer.reset()
        totals: dict[str, torch.Tensor] = {}
        batches = self.training_batches()
        for _ in range(self.iterations_per_epoch):
            batch = self.next_training_batch(batches)
            for key, value in self.train_step(batch).items():
                totals[key] = totals.get(key, 0.0) + value
            if self.weight_average is not None:
                self.weight_average.update(inner_network(self.network))
            self.wait_timer.step_done()
        for key, value in totals.items():
            value = distributed.mean_across_ranks(value / self.iterations_per_epoch, self.world_size)
            self.log.log(epoch, "train_loss" if key == "loss" else f"train_{key}", float(value))
        self.log.log(epoch, "data_wait_fraction", self.wait_timer.fraction)

    def validate_epoch(self, epoch: int) -> None:
        """Loss, masked SSIM and MAE over the fixed validation patches (main process only)."""
        if not self.is_main:
            return
        self.network.eval()
        sums = {"loss": 0.0, "ssim_sum": 0.0, "ae_sum": 0.0, "voxels": 0.0}
        for batch in self.validation_patches:
            for key, value in self.validation_step(self.to_device(batch)).items():
                sums[key] += float(value)
        voxels = max(sums["voxels"], 1.0)
        self.log.log(epoch, "val_loss", sums["loss"] / max(len(self.validation_patches), 1))
        self.log.log(epoch, "val_ssim", sums["ssim_sum"] / voxels)
        self.log.log(epoch, "val_mae", sums["ae_sum"] / voxels)

    def on_epoch_end(self, epoch: int, started: float) -> None:
        """Log, plot, save ``checkpoint_latest`` and (on a new best :attr:`best_metric_key`) ``checkpoint_best``."""
        self.current_epoch = epoch + 1
        self.log.log(epoch, "epoch_time_s", time.time() - started)
        if self.is_main:
            metrics = {k: v[epoch] for k, v in self.log.metrics.items() if len(v) > epoch}
            self.log.print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
            value = metrics.get(self.best_metric_key, float("nan"))
            if not math.isnan(value) and value > self.best_metric:
                self.best_metric = value
                self.save(CHECKPOINT_BEST)
                self.log.print(f"new best {self.best_metric_name} {value:.4f}")
            self.save(CHECKPOINT_LATEST)
            self.log.plot()
        distributed.barrier(self.world_size)

    # ================================================================ checkpoints
    def checkpoint_state(self) -> dict:
        """Everything needed to resume exactly; recipes add their own entries via :meth:`recipe_state`."""
        return {"network_weights": inner_network(self.network).state_dict(),
                "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.schedule.state_dict(),
                "grad_scaler_state": self.grad_scaler.state_dict(), "epoch": self.current_epoch,
                "num_epochs": self.num_epochs, "best_metric": float(self.best_metric),
                "logging": self.log.state_dict(), "rng_state": capture_rng_state(),
                "trainer": type(self).__name__, "target": self.experiment.target,
                "inputs": list(self.experiment.inputs), "configuration": self.experiment.configuration,
                "residual_input": self.residual_input, **self.recipe_state(),
                **({"ema_weights": self.weight_average.state_dict()} if self.weight_average is not None else {})}

    def recipe_state(self) -> dict:
        """Extra checkpoint entries of a recipe (tensors and plain types only)."""
        return {}

    def load_recipe_state(self, checkpoint: dict) -> None:
        """Inverse of :meth:`recipe_state`."""

    def save(self, name: str) -> None:
        """Save a checkpoint; the checkpoint_latest it replaces becomes checkpoint_latest_previous."""
        if self.is_main:
            previous = self.output_folder / CHECKPOINT_PREVIOUS if name == CHECKPOINT_LATEST else None
            save_checkpoint(self.checkpoint_state(), self.output_folder / name, keep_previous=previous)

    def load(self, path: Path | str) -> None:
        """Restore network, optimiser, schedule, scaler, logs, epoch and RNG states from a checkpoint."""
        checkpoint = load_checkpoint(path, map_location=self.device, required=RESUME_KEYS)
        for key, expected in (("target", self.experiment.target), ("inputs", list(self.experiment.inputs)),
                              ("configuration", self.experiment.configuration)):
            if checkpoint.get(key) != expected:
                raise ExperimentError(f"{path} was trained with {key} {checkpoint.get(key)!r}, not {expected!r}")
        load_network_weights(inner_network(self.network), checkpoint, path)
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.schedule.load_state_dict(checkpoint["scheduler_state"])
        self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])
        self.current_epoch = int(checkpoint["epoch"])
        if not self.epochs_from_command_line:  # a run started with --epochs N keeps N when resumed without it
            self.num_epochs = self.schedule.num_epochs = int(checkpoint.get("num_epochs", self.num_epochs))
        self.best_metric = float(checkpoint["best_metric"])
        self.log.load_state_dict(checkpoint["logging"])
        self.load_recipe_state(checkpoint)
        if self.weight_average is not None:
            if "ema_weights" not in checkpoint:
                raise CheckpointError(f"{path} has no EMA weights (ema_weights), which {type(self).__name__} keeps: "
                                      "it was written by another trainer; start without --c")
            self.weight_average.load_state_dict(checkpoint["ema_weights"])
        restore_rng_state(checkpoint["rng_state"])
        if self.world_size > 1:  # ranks must not draw identical batches after a resume
            torch.manual_seed(int(torch.initial_seed()) + self.rank)
            np.random.seed((int(checkpoint["epoch"]) * 1000 + self.rank) % 2 ** 32)

    def resume(self) -> Path | None:
        """``--c``: load checkpoint_latest; if it is missing or damaged, the one before it (a warning says so),
        then checkpoint_final. Return the checkpoint loaded (None: there is none); if none of them loads, raise
        the error of the first."""
        names = (CHECKPOINT_LATEST, CHECKPOINT_PREVIOUS, CHECKPOINT_FINAL)
        errors: list[CheckpointError] = []
        for path in (self.output_folder / name for name in names if (self.output_folder / name).is_file()):
            try:
                self.load(path)
            except CheckpointError as error:
                errors.append(error)
                self.log.print(f"WARNING: cannot resume from {path.name}: {error}; trying the checkpoint before it")
                continue
            if errors:
                self.log.print(f"WARNING: resumed from the older {path.name}: the epochs after it are trained again")
            return path
        if errors:
            raise errors[0]
        return None

    # ================================================================ the run
    def write_model_folder_files(self) -> None:
        """plans.json, dataset.json, dataset_fingerprint.json and model_info.json next to the folds."""
        if not self.is_main:
            return
        experiment = self.experiment
        folder = experiment.model_folder
        info = experiment.model_info(self.residual_input)
        info_path = folder / MODEL_INFO_FILE
        if info_path.is_file():
            existing = json.loads(info_path.read_text())
            if existing != info:
                raise ExperimentError(f"{info_path} describes a different model ({existing}); this run would be "
                                      f"{info}. Folds of one model folder must share inputs and options: use "
                                      "another trainer/plans name or delete the folder.")
        plans_path = folder / "plans.json"
        if plans_path.is_file() and as_plans(json.loads(plans_path.read_text()), str(plans_path)) != experiment.plans:
            raise ExperimentError(f"{plans_path} differs from the current plans {experiment.plans_name}.json; the "
                                  "plans changed since other folds were trained. Delete the model folder to retrain.")
        write_json_atomic(plans_path, experiment.plans.to_dict())
        write_json_atomic(folder / "dataset.json", experiment.dataset_json)
        if experiment.fingerprint is not None:
            write_json_atomic(folder / "dataset_fingerprint.json", experiment.fingerprint)
        write_json_atomic(info_path, info)

    def run_training(self, continue_training: bool = False) -> None:
        """Train for the remaining epochs, save ``checkpoint_final`` and run the full-volume validation."""
        self.initialize()
        self.write_model_folder_files()
        if self.is_main:
            remove_stale_temporaries(folders=[self.output_folder, self.output_folder / "validation"])
        latest, final = self.output_folder / CHECKPOINT_LATEST, self.output_folder / CHECKPOINT_FINAL
        resumed = self.resume() if continue_training else None
        if resumed is not None:
            self.log.print(f"resumed from {resumed.name} at epoch {self.current_epoch}")
        elif continue_training:
            self.log.print("--c given but there is no checkpoint yet: starting from scratch")
        elif latest.is_file() or final.is_file():
            self.log.print(f"WARNING: {self.output_folder} holds checkpoints of an earlier run; they will be "
                           "overwritten (use --c to continue instead)")
        self.log.print(self.describe())
        for epoch in range(self.current_epoch, self.num_epochs):
            started = time.time()
            self.on_epoch_start(epoch)
            self.train_epoch(epoch)
            self.validate_epoch(epoch)
            self.on_epoch_end(epoch, started)
        if self.weight_average is not None:
            inner_network(self.network).load_state_dict(self.weight_average.state_dict())
            self.log.print(f"checkpoint_final holds the EMA of the weights (decay {self.ema_decay})")
        self.save(CHECKPOINT_FINAL)
        self.close()
        if self.is_main and self.final_validation:
            self.log.print("training done; full-volume validation of the fold's validation cases")
            self.run_final_validation()
        elif self.is_main:
            self.log.print("training done; full-volume validation skipped (run synth_train ... --val_only later)")
        distributed.barrier(self.world_size)

    def run_validation_only(self, checkpoint: str = CHECKPOINT_FINAL) -> dict:
        """``--val_only``: load the network from ``checkpoint`` and run just the full-volume validation."""
        if not self.is_main:
            return {}
        path = self.output_folder / checkpoint
        state = load_checkpoint(path, map_location=self.device, required=("network_weights", "epoch"))
        if state.get("target") != self.experiment.target or state.get("inputs") != list(self.experiment.inputs):
            raise ExperimentError(f"{path} predicts {state.get('target')} from {state.get('inputs')}, not "
                                  f"{self.experiment.target} from {self.experiment.inputs}")
        self.network = self.network_for_checkpoint(state).to(self.device)
        load_network_weights(inner_network(self.network), state, path)
        self.log.print(f"--val_only: full-volume validation with {checkpoint} (epoch {state['epoch']})")
        return self.run_final_validation()

    def network_for_checkpoint(self, state: dict) -> nn.Module:
        """The untrained network that the weights of checkpoint ``state`` load into (``--val_only``): the generator
        with the checkpoint's residual input (no prior fitting: the weights hold it)."""
        self.residual_input = state.get("residual_input", self.residual_input)
        return build_synthesis_network(self.config, self.experiment.inputs, self.experiment.num_slices,
                                       self.residual_input)

    def run_final_validation(self) -> dict:
        """Predict the fold's validation cases as whole volumes and evaluate them (``validation/``)."""
        from synthunet.training.validation import validate_full_volumes

        summary = validate_full_volumes(self.experiment, inner_network_with_residual(self.network), self.device,
                                        self.output_folder / "validation", self.log.print)
        return summary

    def close(self) -> None:
        """Stop data workers."""
        self._training_batches = None

    def describe(self) -> str:
        e = self.experiment
        train_cases, val_cases = e.fold_cases()
        return (f"{type(self).__name__}: {e.dataset_name} {e.configuration} target {e.target} from "
                f"{', '.join(e.inputs)}; fold {e.fold} ({len(train_cases)} train / {len(val_cases)} val cases); "
                f"{self.num_epochs} epochs x {self.iterations_per_epoch} iterations, batch {self.batch_size}"
                f"{f' x {self.world_size} processes' if self.world_size > 1 else ''}, patch {list(self.config.patch_size)}"
                f", device {self.device}, AMP {'on' if self.amp else 'off'}, {self.num_workers} data workers"
                + (f", {torch.get_num_threads()} torch threads" if self.device.type == "cpu" else "")
                + (f", residual input {self.residual_input}" if self.residual_input else ""))


def inner_network_with_residual(network: nn.Module) -> nn.Module:
    """The network without DDP / compile wrappers but with its residual connection (for prediction)."""
    while hasattr(network, "module") and isinstance(network.module, nn.Module):
        network = network.module
    return getattr(network, "_orig_mod", network)
