"""``synth_train DATASET CONFIGURATION TARGET FOLD [-tr TRAINER] [-p PLANS] ...``"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import accept_nnunet_flags, refuse_nnunet_flags
from synthunet.prediction.checkpoints import CHECKPOINT_BEST, CHECKPOINT_FINAL
from synthunet.training.experiment import DEFAULT_PLANS, Experiment, ExperimentError
from synthunet.training.trainers import TRAINERS, UNPAIRED_TRAINERS, get_trainer_class
from synthunet.utilities.devices import resolve_device


#: nnU-Net's nnUNetv2_train flags that synthUNet's behaviour already satisfies (documentation/for_nnunet_users.md)
TRAIN_ACCEPTED = {
    "--npz": "the validation predictions are always written (as images), and synth_find_best_configuration "
             "ensembles those",
    "--use_compressed": "the preprocessed data is always read as stored; it is never unpacked first",
}
#: nnU-Net's nnUNetv2_train flags that synth_train does not have, and why
TRAIN_REFUSED = {
    "-pretrained_weights": "synth_train does not initialise from another model's weights; it trains from scratch "
                           "or continues its own run with --c",
    "--disable_checkpointing": "checkpoints are always written: --c resumes from them and --val_only validates them",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_train", description="Train a synthUNet model that predicts TARGET from the other sequences.",
        epilog=f"Trainers: {', '.join(TRAINERS)}; unpaired (--unpaired): {', '.join(UNPAIRED_TRAINERS)}. "
               "See documentation/training.md.")
    parser.add_argument("dataset", help="dataset id (501) or name (Dataset501_BraTSPhantom)")
    parser.add_argument("configuration", help="plans configuration, e.g. 3d_fullres or 2.5d")
    parser.add_argument("target", help="channel to synthesise, a name from dataset.json (e.g. T1C); or 'seg' with "
                                       "-tr SegmentationTrainer: a tumour segmenter (documentation/segmentation.md)")
    parser.add_argument("fold", help="cross-validation fold 0-4, or 'all'")
    parser.add_argument("-tr", "--trainer", default="SynthTrainer", help="training recipe (default: SynthTrainer)")
    parser.add_argument("-p", "--plans", "--plans_name", dest="plans", default=DEFAULT_PLANS,
                        help=f"plans name (default: {DEFAULT_PLANS})")
    parser.add_argument("--inputs", nargs="+", default=None, help="input channels (default: all but the target)")
    parser.add_argument("--device", "-device", choices=("cpu", "cuda", "mps"), default=None,
                        help="default: cuda if available, else cpu")
    parser.add_argument("--epochs", type=int, default=None, help="override the plans' number of epochs")
    parser.add_argument("--c", dest="continue_training", action="store_true",
                        help="continue from checkpoint_latest (exact resume: weights, optimiser, schedule, RNG)")
    parser.add_argument("--val_only", "--val", dest="val_only", action="store_true",
                        help="only run the full-volume validation with checkpoint_final")
    parser.add_argument("--val_best", action="store_true",
                        help="with --val_only: validate with checkpoint_best instead of checkpoint_final")
    parser.add_argument("--skip_final_validation", action="store_true",
                        help="do not predict and evaluate the validation cases after training (run --val_only later)")
    parser.add_argument("--num_gpus", "-num_gpus", type=int, default=1,
                        help="processes for DistributedDataParallel (one per GPU; gloo on --device cpu)")
    parser.add_argument("--residual_input", default=None,
                        help="input channel added to the network output (long residual learning, seed 002)")
    parser.add_argument("--vgg_weights", default=None,
                        help="local VGG-19 state dict for perceptual recipes (or $SYNTHUNET_VGG19_WEIGHTS)")
    parser.add_argument("--unpaired", action="store_true",
                        help="train on unpaired batches (source and target patches from different cases); only "
                             "for unpaired recipes (SynthTrainer_ANGAN, which implies it). See "
                             "documentation/unpaired.md")
    accept_nnunet_flags(parser, TRAIN_ACCEPTED)
    refuse_nnunet_flags(parser, TRAIN_REFUSED)
    return parser


def train_fold(dataset: str, configuration: str, target: str, fold: str, trainer_name: str = "SynthTrainer",
               plans_name: str = DEFAULT_PLANS, inputs: Sequence[str] | None = None, epochs: int | None = None,
               continue_training: bool = False, val_only: bool = False, options: dict | None = None,
               device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1, num_workers: int | None = None,
               final_validation: bool = True, val_checkpoint: str = CHECKPOINT_FINAL):
    """Resolve the experiment, build the recipe and train (or only validate). Returns the trainer.

    Module level and with plain arguments so that DDP can run it in spawned processes.
    """
    trainer_class = get_trainer_class(trainer_name)
    experiment = Experiment.resolve(dataset, configuration, target, fold, trainer_name, plans_name, inputs)
    trainer = trainer_class(experiment, device=device, num_epochs=epochs, num_workers=num_workers, rank=rank,
                            world_size=world_size, final_validation=final_validation, **(options or {}))
    if val_only:
        trainer.run_validation_only(val_checkpoint)
    else:
        trainer.run_training(continue_training)
    return trainer


def run(args: argparse.Namespace) -> int:
    if args.val_best and not args.val_only:
        raise ExperimentError("--val_best chooses the checkpoint of --val_only (synth_train ... --val_only "
                              "--val_best); training itself always ends with the validation of checkpoint_final")
    device = str(resolve_device(args.device, include_mps=False))  # training uses MPS only when asked
    # recipe options; residual_input is a keyword of every recipe, vgg_weights only of the perceptual ones
    options = {k: v for k, v in (("vgg_weights", args.vgg_weights), ("residual_input", args.residual_input)) if v}
    if args.unpaired:
        trainer_class = get_trainer_class(args.trainer)
        if not trainer_class.unpaired:
            raise ExperimentError(f"--unpaired needs an unpaired recipe ({', '.join(UNPAIRED_TRAINERS)}); "
                                  f"{args.trainer} trains on paired patches (drop --unpaired or choose -tr "
                                  "SynthTrainer_ANGAN)")
        options["unpaired"] = True
    common = dict(dataset=args.dataset, configuration=args.configuration, target=args.target, fold=args.fold,
                  trainer_name=args.trainer, plans_name=args.plans, inputs=args.inputs, epochs=args.epochs,
                  continue_training=args.continue_training, val_only=args.val_only, options=options,
                  final_validation=not args.skip_final_validation,
                  val_checkpoint=CHECKPOINT_BEST if args.val_best else CHECKPOINT_FINAL)
    if args.num_gpus < 1:
        raise ExperimentError(f"--num_gpus must be at least 1, got {args.num_gpus}")
    if args.num_gpus == 1 or args.val_only:
        train_fold(device=device, **common)
        return 0
    # check everything (and write splits_final.json) once before spawning the processes
    if get_trainer_class(args.trainer).unpaired:
        raise ExperimentError(f"{args.trainer} runs in one process; --num_gpus > 1 is not supported")
    Experiment.resolve(args.dataset, args.configuration, args.target, args.fold, args.trainer, args.plans, args.inputs)
    from synthunet.training.distributed import launch

    launch(train_fold, args.num_gpus, device, **common)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
