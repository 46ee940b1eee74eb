"""Command lines ``synth_evaluate`` and ``synth_accumulate_crossval`` (errors through :func:`run_cli`)."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.evaluation.metrics import DEFAULT_NORMALISATION, MODES, NORMALISATIONS, EvaluationError
from synthunet.evaluation.segmenter import INPUT_SETS

_EVALUATE_EPILOG = """\
examples:
  synth_evaluate -ref $synthUNet_raw/Dataset501_X/imagesTs -pred predictions/ -l $synthUNet_raw/Dataset501_X/labelsTs \\
      -d 501 -o predictions/summary.json
  synth_evaluate -ref BraTS-val/ -pred brasyn_out/ --mode brasyn -o brasyn_summary.json
  synth_evaluate -ref gt/ -pred pred/ -l labels/ --segmenter "python seg.py {input} {output}" -o out/
  synth_evaluate -ref imagesTr/ -pred pred/ -l labelsTr/ -d 501 -o out/ \\
      --segmenter "synth_segment -i {input} -o {output} -d 501 -f 0"

Outputs: summary.json (mean/std/median/min/max/n per target, region and metric), per_case.csv (one row per
case x target x region) next to it, and with --segmenter segmentation_dice.csv (Dice per case, target and input
set) and segmentation_dice.md (the real / synthetic / missing table). See documentation/evaluation.md.
"""


def _data_range(text: str) -> float | str:
    keyword = text.strip().lower()
    if keyword in ("region", "brain"):
        return keyword
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, 'region' or 'brain', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"data range must be positive, got {value}")
    return value


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_evaluate", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EVALUATE_EPILOG,
        description="Score synthetic MRI sequences against the real ones: MAE, MSE, PSNR, SSIM and NCC in the "
                    "brain, the tumour, the healthy brain and per tumour label.")
    parser.add_argument("-ref", "--reference", required=True, type=Path,
                        help="folder with the ground-truth images: raw format ({case}_{XXXX}.nii.gz) or BraTS "
                             "format ({case}-{t1n,t1c,t2w,t2f}.nii.gz, flat or in case sub-folders)")
    parser.add_argument("-pred", "--prediction", required=True, type=Path,
                        help="folder with the predicted images (raw or BraTS names; matched to the reference by "
                             "case id and channel name)")
    parser.add_argument("-l", "--labels", type=Path, default=None,
                        help="folder with tumour label maps ({case}.nii.gz or {case}-seg.nii.gz; 1 NCR, 2 ED, 3 ET). "
                             "Default: the {case}-seg files of a BraTS-format reference folder, else no tumour regions")
    parser.add_argument("-m", "--masks", type=Path, default=None,
                        help="folder with brain masks ({case}.nii.gz, non-zero inside). Default: the reference's "
                             "non-zero voxels with holes filled (plus the tumour)")
    parser.add_argument("--mode", choices=MODES, default="region",
                        help="'region' (default): SSIM map averaged inside each region (see --normalisation). "
                             "'brasyn': the BraSyn organisers' scoring (per-volume 0.5-99.5 percentile rescaling to "
                             "[0,1], SSIM of image*mask over the whole volume, tumour = seg>0, healthy = seg==0)")
    parser.add_argument("--normalisation", "--normalization", choices=NORMALISATIONS, default=DEFAULT_NORMALISATION,
                        help="region mode: 'percentile' (default): reference and prediction are each rescaled "
                             "(not clipped) by their own 0.5-99.5 percentiles inside the brain mask (lower bound "
                             "raised to 0 if negative), so a per-scan gain (arbitrary in multi-centre MRI, "
                             "unknowable for a synthesised sequence) does not count; 'none': images compared as given "
                             "(only for images already on one scale). brasyn mode always uses its own whole-volume "
                             "percentile normalisation ('percentile' only)")
    parser.add_argument("--data_range", type=_data_range, default=None,
                        help="data range R for PSNR (10 log10 R^2/MSE) and SSIM (C1=(0.01R)^2, C2=(0.03R)^2). "
                             "region mode, after the normalisation: 'region' (default; PSNR: reference max-min "
                             "inside each region, SSIM: inside the brain), 'brain' (both: reference max-min inside "
                             "the brain) or a number. "
                             "brasyn mode: default PSNR 1 and SSIM as torchmetrics infers it; a number overrides both")
    parser.add_argument("--dataset_json", "-djfile", dest="dataset_json", type=Path, default=None,
                        help="dataset.json whose channel_names map raw channel indices to names (e.g. 1 -> T1C) "
                             "and whose labels name the tumour labels")
    parser.add_argument("-d", "--dataset", default=None,
                        help="dataset id or name (e.g. 501); reads $synthUNet_raw/DatasetXXX_Name/dataset.json "
                             "(alternative to --dataset_json). Without either, a raw channel's name is its index")
    parser.add_argument("--target", default=None,
                        help="channel name of prediction files named just {case}.nii.gz (e.g. T1C)")
    parser.add_argument("--targets", nargs="+", default=None,
                        help="evaluate only these channel names (default: every channel with predictions)")
    parser.add_argument("--cases", nargs="+", default=None,
                        help="evaluate only these case ids (default: every reference case)")
    parser.add_argument("--allow_missing", "--chill", dest="allow_missing", action="store_true",
                        help="skip, with a warning, predictions without reference, references without prediction "
                             "and cases without labels/mask (default: stop with an error listing them)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="summary JSON path (e.g. results/summary.json; per_case.csv goes next to it) or a "
                             "folder (summary.json and per_case.csv are written inside)")
    parser.add_argument("--per_case_csv", type=Path, default=None,
                        help="path of the per-case CSV (default: per_case.csv next to the summary)")
    parser.add_argument("-np", "--num_processes", type=int, default=1,
                        help="worker processes over cases (default 1)")
    parser.add_argument("--segmenter", default=None,
                        help="downstream check: a tumour-segmentation command template with {input} and {output} "
                             "placeholders, e.g. \"nnUNetv2_predict -i {input} -o {output} -d 137 -c 3d_fullres\". It "
                             "is run (without a shell) on the real inputs and on the inputs with the target replaced "
                             "by the prediction (raw format {case}_{XXXX}.nii.gz; BraTS channels 0 T1N, 1 T1C, 2 T2W, "
                             "3 T2F) and must write {output}/{case}.nii.gz label maps; Dice WT/TC/ET is reported. "
                             "A trained synthUNet segmenter: \"synth_segment -i {input} -o {output} -d 501 -f 0\"")
    parser.add_argument("--segmenter_sets", nargs="+", choices=INPUT_SETS, default=list(INPUT_SETS),
                        help="input sets for --segmenter (default: all): real (reference images), synthetic (target "
                             "replaced by the prediction), missing (target replaced by zeros: the segmenter without "
                             "the sequence)")
    parser.add_argument("--segmenter_work_folder", type=Path, default=None,
                        help="keep the segmenter's input sets and outputs in this folder (default: a temporary "
                             "folder that is deleted)")
    parser.add_argument("--segmenter_dataset_json", type=Path, default=None,
                        help="dataset.json of the segmenter's training data when its label maps are numbered "
                             "differently from the reference labels, e.g. nnU-Net's Dataset137 (1 edema, 2 necrosis, "
                             "3 enhancing, with regions) against BraTS 2023 labels (1 NCR, 2 ED, 3 ET): each region's "
                             "Dice then compares the same tissue. Default: the segmenter numbers labels as the "
                             "reference does")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no result table")
    refuse_nnunet_flags(parser, {"-pfile": "scoring needs no plans file (-djfile/--dataset_json names the channels)",
                                 "-il": "there is no label class to ignore: synthesis is scored on intensities inside "
                                        "regions (brain, tumour, healthy brain, per tumour label)"})
    return parser


def evaluate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``synth_evaluate``; returns the exit code."""
    args = build_evaluate_parser().parse_args(argv)
    return run_cli(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    from synthunet.evaluation.crossval import format_summary_table
    from synthunet.evaluation.evaluate import evaluate_folders
    from synthunet.evaluation.segmenter import format_segmentation_table

    if args.output.suffix.lower() != ".json" and args.output.exists() and not args.output.is_dir():
        raise EvaluationError(f"-o {args.output} exists and is not a folder or a .json path")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        summary = evaluate_folders(
            args.reference, args.prediction, args.output, labels_folder=args.labels, masks_folder=args.masks,
            mode=args.mode, data_range=args.data_range, normalisation=args.normalisation,
            dataset_json=args.dataset_json, dataset=args.dataset,
            target=args.target, targets=args.targets, cases=args.cases, allow_missing=args.allow_missing,
            num_processes=args.num_processes, segmenter=args.segmenter,
            segmenter_work_folder=args.segmenter_work_folder, per_case_file=args.per_case_csv,
            progress=not args.quiet, segmenter_sets=args.segmenter_sets,
            segmenter_dataset_json=args.segmenter_dataset_json)
    if not args.quiet:
        print(format_summary_table(summary["per_target"]))
        segmentation = summary.get("downstream_segmentation")
        if segmentation:
            print("\nDownstream segmentation (Dice, mean +- std over cases):")
            print(format_segmentation_table(segmentation["per_target"]))
        print(f"Wrote {summary['files']['summary']} and {summary['files']['per_case']}")
    return 0


def build_accumulate_parser() -> argparse.ArgumentParser:
    from synthunet.evaluation.crossval import DEFAULT_FOLDS, DEFAULT_PLANS, DEFAULT_TRAINER

    parser = argparse.ArgumentParser(
        prog="synth_accumulate_crossval",
        description="Merge the validation results (fold_N/validation/per_case.csv and summary.json) of the "
                    "cross-validation folds of one model into crossval_results_folds_*/ in its model folder, "
                    "with statistics over all cases.")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 501 or Dataset501_Name")
    parser.add_argument("-c", "--configuration", required=True, help="configuration, e.g. 3d_fullres or 2.5d")
    parser.add_argument("--target", required=True, help="target sequence of the model, e.g. T1C")
    parser.add_argument("-tr", "--trainer", default=DEFAULT_TRAINER, help=f"trainer name (default {DEFAULT_TRAINER})")
    parser.add_argument("-p", "--plans", "--plans_name", dest="plans", default=DEFAULT_PLANS,
                        help=f"plans name (default {DEFAULT_PLANS})")
    parser.add_argument("-f", "--folds", nargs="+", type=int, default=list(DEFAULT_FOLDS),
                        help="folds to merge (default 0 1 2 3 4)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output folder (default: {model folder}/crossval_results_folds_{folds})")
    parser.add_argument("--quiet", action="store_true", help="do not print the result table")
    return parser


def accumulate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``synth_accumulate_crossval``; returns the exit code."""
    args = build_accumulate_parser().parse_args(argv)
    return run_cli(lambda: _accumulate(args))


def _accumulate(args: argparse.Namespace) -> int:
    from synthunet.evaluation.crossval import accumulate_crossval, format_summary_table

    summary = accumulate_crossval(args.dataset, args.configuration, args.target, args.trainer, args.plans,
                                  args.folds, args.output)
    if not args.quiet:
        print(format_summary_table(summary["per_target"]))
        print(f"Wrote {summary['output_folder']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(evaluate_main())
