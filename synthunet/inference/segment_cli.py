"""``synth_segment``: tumour label maps for every case of a folder, with a trained segmenter
(``synth_train DATASET 3d_fullres seg FOLD -tr SegmentationTrainer``; see documentation/segmentation.md)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.dataset.identifiers import results_dataset_folder
from synthunet.errors import InputError
from synthunet.prediction.model_folder import (DEFAULT_CHECKPOINT, DEFAULT_CONFIGURATION, DEFAULT_PLANS,
                                               SEGMENTATION_TARGET, ModelFolderError, model_folder_name)

DEFAULT_SEGMENTATION_TRAINER = "SegmentationTrainer"


#: nnU-Net's nnUNetv2_predict flags that synth_segment does not have, and why (documentation/for_nnunet_users.md)
SEGMENT_REFUSED = {
    "--save_probabilities": "synth_segment writes label maps only",
    "-prev_stage_predictions": "synthUNet has no cascade of resolution stages",
    "-num_parts": "synth_segment does not split its input folder (synth_predict does); split the folder instead",
    "-part_id": "synth_segment does not split its input folder (synth_predict does); split the folder instead",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_segment",
        description="Segment the tumour of every case of a folder (every input sequence present; a missing one "
                    "as a zero-filled image) into {case}.nii.gz uint8 label maps (BraTS: 1 NCR, 2 ED, 3 ET) in the "
                    "input geometry. The command template of synth_evaluate --segmenter: "
                    "\"synth_segment -i {input} -o {output} -d 501 -f 0\".")
    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="folder of {case}_{XXXX}.nii.gz files (every channel of the dataset), or BraTS case "
                             "folders")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("-d", "--dataset", help="dataset id or name, e.g. 501 (the segmenter under $synthUNet_results)")
    parser.add_argument("-m", "--model_folder", type=Path,
                        help="the segmenter's model folder, instead of -d/-c/-tr/-p")
    parser.add_argument("-c", "--configuration", default=DEFAULT_CONFIGURATION,
                        help=f"configuration (default {DEFAULT_CONFIGURATION})")
    parser.add_argument("-tr", "--trainer", default=DEFAULT_SEGMENTATION_TRAINER,
                        help=f"trainer name (default {DEFAULT_SEGMENTATION_TRAINER})")
    parser.add_argument("-p", "--plans", "--plans_name", dest="plans", default=DEFAULT_PLANS,
                        help=f"plans name (default {DEFAULT_PLANS})")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds whose softmax is averaged (default: every fold that has the checkpoint)")
    parser.add_argument("--step_size", "-step_size", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch")
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation (8x faster)")
    parser.add_argument("--device", "-device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--batch_size", type=int, default=None, help="patches per forward pass (default: memory-aware)")
    parser.add_argument("-npp", "--num_processes_preprocessing", type=int, default=2,
                        help="background preprocessing processes (0 = in this process)")
    parser.add_argument("-nps", "--num_processes_export", type=int, default=2,
                        help="background export processes (0 = in this process)")
    parser.add_argument("--continue_prediction", action="store_true", help="skip cases whose label map exists")
    parser.add_argument("-chk", "--checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"checkpoint file name (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--quiet", "--disable_progress_bar", dest="quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", dest="quiet", action="store_false",
                        help="progress bar and summary line (the default; overrides --quiet)")
    refuse_nnunet_flags(parser, SEGMENT_REFUSED)
    return parser


def resolve_model_folder(args: argparse.Namespace) -> Path:
    """``-m`` as given, or ``$synthUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}__seg``."""
    if args.model_folder:
        return args.model_folder
    if not args.dataset:
        raise InputError("Say which segmenter to use: -d DATASET (with -c/-tr/-p) or -m MODEL_FOLDER")
    folder = results_dataset_folder(args.dataset) / model_folder_name(args.trainer, args.plans, args.configuration,
                                                                      SEGMENTATION_TARGET)
    if not folder.is_dir():
        raise ModelFolderError(f"No segmenter {folder.name} in {folder.parent}. Train one with: synth_train "
                               f"{args.dataset} {args.configuration} {SEGMENTATION_TARGET} 0 -tr {args.trainer} "
                               f"(or check -c/-tr/-p)")
    return folder


def run(argv: Sequence[str] | None = None) -> int:
    from synthunet.inference.cli import files_options, predictor_options
    from synthunet.inference.segmentation import SegmentationPredictor

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    predictor = SegmentationPredictor(resolve_model_folder(args), **predictor_options(args))
    written = predictor.predict_from_files(args.input, args.output, **files_options(args), progress=not args.quiet)
    if not args.quiet:
        print(f"Wrote {len(written)} label map(s) to {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_segment``."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    raise SystemExit(main())
