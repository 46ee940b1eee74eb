"""``synth_export_model_to_zip`` and ``synth_install_pretrained_model_from_zip`` (documentation/predict.md)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.errors import InputError
from synthunet.model_sharing.archive import DEFAULT_MAX_TOTAL_BYTES, export_model_to_zip, install_model_from_zip
from synthunet.prediction.model_folder import DEFAULT_CHECKPOINT, DEFAULT_CONFIGURATION, DEFAULT_PLANS, DEFAULT_TRAINER


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_export_model_to_zip",
        description="Write one trained model (chosen folds and checkpoints) as a zip with a sha256 manifest, "
                    "for synth_install_pretrained_model_from_zip on another machine.")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 501")
    parser.add_argument("-t", "--target", required=True, help="the model's target sequence, e.g. T1C")
    parser.add_argument("-c", "--configuration", default=DEFAULT_CONFIGURATION,
                        help=f"configuration (default {DEFAULT_CONFIGURATION})")
    parser.add_argument("-tr", "--trainer", default=DEFAULT_TRAINER, help=f"trainer name (default {DEFAULT_TRAINER})")
    parser.add_argument("-p", "--plans", "--plans_name", dest="plans", default=DEFAULT_PLANS,
                        help=f"plans name (default {DEFAULT_PLANS})")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to include (default: every fold that has the (first) checkpoint); 'all' = fold_all")
    parser.add_argument("-chk", "--chk", "--checkpoint", dest="checkpoints", nargs="+", default=[DEFAULT_CHECKPOINT],
                        help=f"checkpoint file(s) of each fold to include (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the zip file to write")
    refuse_nnunet_flags(parser, {
        "--not_strict": "every fold exported must have every checkpoint asked for (-chk); the export stops "
                        "otherwise, so that an archive is never silently incomplete",
        "--exp_cv_preds": "the archive holds the model only; the cross-validation predictions stay in the model "
                          "folder"})
    return parser


def build_install_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_install_pretrained_model_from_zip",
        description="Check a model zip written by synth_export_model_to_zip (paths, manifest, checksums, size) and "
                    "install it under $synthUNet_results/DatasetXXX_Name/; nothing is written if a check fails.")
    parser.add_argument("zip", type=Path, help="the model zip")
    parser.add_argument("--overwrite", action="store_true", help="replace an installed model folder of the same name")
    parser.add_argument("--max_size_gb", type=float, default=DEFAULT_MAX_TOTAL_BYTES / 1024 ** 3,
                        help="refuse archives whose files add up to more than this, uncompressed (default "
                             f"{DEFAULT_MAX_TOTAL_BYTES // 1024 ** 3})")
    return parser


def run_export(argv: Sequence[str] | None = None) -> int:
    args = build_export_parser().parse_args(argv)
    written = export_model_to_zip(args.dataset, args.target, args.output, args.configuration, args.trainer,
                                  args.plans, args.folds, args.checkpoints)
    print(f"Wrote {written} ({written.stat().st_size / 1024 ** 2:.1f} MiB)")
    return 0


def run_install(argv: Sequence[str] | None = None) -> int:
    args = build_install_parser().parse_args(argv)
    if not args.max_size_gb > 0:
        raise InputError(f"--max_size_gb must be positive, got {args.max_size_gb}")
    installed = install_model_from_zip(args.zip, overwrite=args.overwrite,
                                       max_total_bytes=int(args.max_size_gb * 1024 ** 3))
    print(f"Installed {installed}\nPredict with: synth_predict -i INPUT -o OUTPUT -m {installed}")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_export_model_to_zip``."""
    return run_cli(lambda: run_export(argv))


def install_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_install_pretrained_model_from_zip``."""
    return run_cli(lambda: run_install(argv))


if __name__ == "__main__":
    raise SystemExit(export_main())
