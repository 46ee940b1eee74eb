"""``synth_predict``: synthesise the missing sequence of every case in a folder (see documentation/predict.md)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.dataset.identifiers import results_dataset_folder
from synthunet.errors import InputError
from synthunet.inference.best_configuration import load_choices, predict_with_choices, uses_best
from synthunet.inference.layout import list_input_cases
from synthunet.inference.parts import check_part, select_part
from synthunet.inference.predictor import WINDOWS, SynthPredictor
from synthunet.inference.time_budget import DEFAULT_CPU_BUDGET_S
from synthunet.prediction.model_folder import (DEFAULT_CHECKPOINT, DEFAULT_CONFIGURATION, DEFAULT_PLANS,
                                               DEFAULT_TRAINER, ModelFolderError, find_model_folders, model_folder_name)
from synthunet.prediction.model_folder import ModelFolder
from synthunet.utilities.devices import resolve_device


#: nnU-Net's nnUNetv2_predict flags that synth_predict does not have, and why (documentation/for_nnunet_users.md)
PREDICT_REFUSED = {
    "--save_probabilities": "a synthesised image has intensities, not class probabilities; --save_uncertainty "
                            "writes the spread over folds (and orientations) instead",
    "-prev_stage_predictions": "synthUNet has no cascade of resolution stages; --cascade is something else: it "
                               "first synthesises a missing input sequence",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_predict",
        description="Synthesise a missing MRI sequence for every case of a raw-format or BraTS-format folder.")
    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="folder of {case}_{XXXX}.nii.gz files, or of BraTS case folders (BraTS-GLI-00000-000/...)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("-d", "--dataset", help="dataset id or name, e.g. 501 (models under $synthUNet_results)")
    parser.add_argument("-m", "--model_folders", nargs="+", type=Path,
                        help="model folder(s) to use instead of -d/-tr/-p/-c (one per target)")
    parser.add_argument("-c", "--configuration", default=DEFAULT_CONFIGURATION,
                        help="3d_fullres (default) or 2.5d; 'best' = what synth_find_best_configuration chose per "
                             "target (inference_information_{TARGET}.json of the dataset: configuration(s), trainer, "
                             "plans and folds; several configurations are averaged), or the path of such a file")
    parser.add_argument("-tr", "--trainer", default=DEFAULT_TRAINER, help=f"trainer name (default {DEFAULT_TRAINER})")
    parser.add_argument("-p", "--plans", "--plans_name", dest="plans", default=DEFAULT_PLANS,
                        help=f"plans name (default {DEFAULT_PLANS})")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble (default: every fold that has the checkpoint); 'all' = fold_all")
    parser.add_argument("--target", default="auto",
                        help="sequence to predict, e.g. T1C; 'auto' (default) = the one sequence each case lacks")
    parser.add_argument("--step_size", "-step_size", type=float, default=None,
                        help="sliding-window step as a fraction of the patch (default 0.5, or 0.75 if the time budget "
                             "needs it)")
    parser.add_argument("--disable_tta", action="store_true",
                        help="no mirroring test-time augmentation (8x faster in 3D)")
    parser.add_argument("--inference_window", choices=WINDOWS, default="patch",
                        help="patch (default): sliding windows of the training patch; auto: U-Nets predict the whole "
                             "volume (2.5d: whole slices) in one window where it fits, 2-3x faster on a CPU, not "
                             "identical (documentation/predict.md)")
    parser.add_argument("--orientations", type=int, choices=(1, 3, 9), default=None,
                        help="2.5d only: 1 = first slicing axis (axial), 3 = principal axes, 9 = + face diagonals "
                             "(default 9, or fewer if the time budget needs it)")
    parser.add_argument("--time_budget_s", type=float, default=None,
                        help=f"seconds of network time per case: the folds, mirroring, 2.5d orientations and step "
                             f"that the flags do not fix are chosen to fit, and the choice is printed (default "
                             f"{DEFAULT_CPU_BUDGET_S:.0f} on a CPU, none on a GPU; 0 = no budget: every fold, "
                             f"mirroring, 9 orientations, step 0.5)")
    parser.add_argument("--save_uncertainty", action="store_true",
                        help="also write {name}_uncertainty.nii.gz: std over folds (and orientations), raw units")
    parser.add_argument("--device", "-device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--batch_size", type=int, default=None, help="patches per forward pass (default: memory-aware)")
    parser.add_argument("-npp", "--num_processes_preprocessing", type=int, default=2,
                        help="background preprocessing processes (0 = in this process)")
    parser.add_argument("-nps", "--num_processes_export", type=int, default=2,
                        help="background export processes (0 = in this process)")
    parser.add_argument("--continue_prediction", action="store_true", help="skip cases whose output already exists")
    parser.add_argument("--brats_subfolders", action="store_true",
                        help="BraTS input: write OUT/{case}/{case}-{seq}.nii.gz instead of OUT/{case}-{seq}.nii.gz")
    parser.add_argument("-chk", "--checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"checkpoint file name (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--cascade", action="store_true",
                        help="when a case also lacks an input of the target's model, first synthesise that input with "
                             "the model trained for it (same -tr/-p/-c preferred, else any model folder of the dataset, "
                             "or next to the -m folders), then the target (seed 001, section IV-E). With --target auto "
                             "a case may then miss several sequences: the one written is the one the others feed")
    parser.add_argument("--verbose", action="store_true", help="log details and a progress bar per case")
    parser.add_argument("--disable_progress_bar", dest="verbose", action="store_false",
                        help="no details and no progress bar (the default; overrides --verbose)")
    parser.add_argument("-num_parts", "--num_parts", type=int, default=1,
                        help="split the input cases into this many parts and predict only one (-part_id), e.g. one "
                             "run per GPU; the sorted case list's case i belongs to part i %% num_parts (default 1)")
    parser.add_argument("-part_id", "--part_id", type=int, default=0,
                        help="which part this run predicts, 0 .. num_parts-1 (default 0)")
    refuse_nnunet_flags(parser, PREDICT_REFUSED)
    return parser


def part_cases(args: argparse.Namespace, dataset) -> list[str] | None:
    """``-num_parts/-part_id``: this run's share of the input folder's cases (``None`` = every case)."""
    check_part(args.num_parts, args.part_id)
    if args.num_parts == 1:
        return None
    _, cases = list_input_cases(args.input, dataset)
    return select_part([case.case_id for case in cases], args.num_parts, args.part_id)


def resolve_model_folders(args: argparse.Namespace) -> list[Path]:
    """The model folders to load: ``-m`` as given, or every target of ``-d/-tr/-p/-c`` (only ``--target``'s)."""
    if args.model_folders:
        return list(args.model_folders)
    if not args.dataset:
        raise InputError("Say which model to use: -d DATASET (with -c/-tr/-p) or -m MODEL_FOLDER")
    dataset_folder = results_dataset_folder(args.dataset)
    found = find_model_folders(dataset_folder, args.trainer, args.plans, args.configuration)
    pattern = model_folder_name(args.trainer, args.plans, args.configuration, "TARGET")
    if not found:
        present = sorted(p.name for p in dataset_folder.iterdir() if p.is_dir()) if dataset_folder.is_dir() else []
        raise ModelFolderError(f"No trained model {pattern} in {dataset_folder} (it holds: "
                               f"{', '.join(present) or 'nothing'}). Train one with synth_train or check -tr/-p/-c.")
    if args.target.lower() != "auto":
        matches = [path for target, path in found.items() if target.lower() == args.target.lower()]
        if not matches:
            raise ModelFolderError(f"No model for target {args.target} in {dataset_folder} ({pattern}); trained "
                                   f"targets: {', '.join(sorted(found))}")
        return matches
    return list(found.values())


def cascade_candidates(args: argparse.Namespace) -> list[Path]:
    """Model folders that may fill a missing input: every model folder of the dataset's results folder (with
    -d) or next to the -m folders; those of the same trainer, plans and configuration first."""
    folders = ([results_dataset_folder(args.dataset)] if args.dataset else []) + \
        [Path(p).resolve().parent for p in (args.model_folders or [])]
    candidates: list[Path] = []
    for folder in dict.fromkeys(folders):
        if folder.is_dir():
            candidates += [c for c in sorted(folder.iterdir()) if (c / "model_info.json").is_file()]
    prefix = model_folder_name(args.trainer, args.plans, args.configuration, "")
    return sorted(dict.fromkeys(candidates), key=lambda c: not c.name.startswith(prefix))


def predictor_options(args: argparse.Namespace) -> dict:
    """The predictor arguments of the options synth_predict and synth_segment share."""
    step_size = 0.5 if args.step_size is None else args.step_size
    return {"folds": args.folds, "checkpoint": args.checkpoint, "device": args.device, "step_size": step_size,
            "use_mirroring": not args.disable_tta, "batch_size": args.batch_size}


def time_budget(args: argparse.Namespace) -> float | None:
    """``--time_budget_s``, or its default: :data:`DEFAULT_CPU_BUDGET_S` on a CPU, no budget elsewhere."""
    if args.time_budget_s is not None:
        if args.time_budget_s < 0:
            raise InputError(f"--time_budget_s must be >= 0 (0 = no budget), got {args.time_budget_s}")
        return args.time_budget_s or None
    return DEFAULT_CPU_BUDGET_S if resolve_device(args.device).type == "cpu" else None


def fixed_settings(args: argparse.Namespace) -> list[str]:
    """The settings the flags fix, which a time budget leaves alone."""
    return [name for name, given in (("folds", args.folds is not None), ("mirroring", args.disable_tta),
                                     ("orientations", args.orientations is not None),
                                     ("step_size", args.step_size is not None)) if given]


def files_options(args: argparse.Namespace) -> dict:
    """The ``predict_from_files`` arguments of the options synth_predict and synth_segment share."""
    return {"continue_prediction": args.continue_prediction,
            "num_processes_preprocessing": args.num_processes_preprocessing,
            "num_processes_export": args.num_processes_export}


def run_best(args: argparse.Namespace) -> list[Path]:
    """``-c best`` / ``-c FILE.json``: the chosen model folder(s) and folds of each target (-f overrides the folds)."""
    if args.model_folders:
        raise InputError("-c best reads the models from inference_information files; it cannot be combined with -m")
    choices = load_choices(args.configuration, results_dataset_folder(args.dataset) if args.dataset else None,
                           args.target)
    cascade_from = sorted({folder.parent for c in choices.values() for folder in c.model_folders})
    cascade_models = [c for folder in cascade_from for c in sorted(folder.iterdir())
                      if (c / "model_info.json").is_file()]
    options = {**predictor_options(args), "orientations": 9 if args.orientations is None else args.orientations,
               "verbose": args.verbose, "cascade": args.cascade, "cascade_models": cascade_models}
    cases = part_cases(args, ModelFolder.load(next(iter(choices.values())).model_folders[0]).dataset)
    return predict_with_choices(choices, args.input, args.output, args.target, args.folds, cases=cases,
                                save_uncertainty=args.save_uncertainty, brats_subfolders=args.brats_subfolders,
                                continue_prediction=args.continue_prediction, predictor_options=options,
                                files_options={k: v for k, v in files_options(args).items()
                                               if k != "continue_prediction"})


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    check_part(args.num_parts, args.part_id)
    if uses_best(args.configuration):
        written = run_best(args)
        print(f"Wrote {len(written)} prediction(s) to {args.output}")
        return 0
    predictor = SynthPredictor(resolve_model_folders(args), **predictor_options(args),
                               orientations=9 if args.orientations is None else args.orientations,
                               verbose=args.verbose, cascade=args.cascade, cascade_models=cascade_candidates(args),
                               window=args.inference_window, time_budget_s=time_budget(args),
                               fixed=fixed_settings(args), report=tqdm.write)
    written = predictor.predict_from_files(args.input, args.output, args.target, save_uncertainty=args.save_uncertainty,
                                           brats_subfolders=args.brats_subfolders, **files_options(args),
                                           cases=part_cases(args, predictor.dataset))
    print(f"Wrote {len(written)} prediction(s) to {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_predict``."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    raise SystemExit(main())
