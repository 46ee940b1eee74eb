"""``synth_extract_fingerprint``: write dataset_fingerprint.json for one or more raw datasets."""
from __future__ import annotations

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import accept_nnunet_flags, refuse_nnunet_flags

import argparse
import sys

from synthunet.fingerprint.extractor import extract_fingerprint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_extract_fingerprint",
        description="Compute the dataset fingerprint (spacings, shapes after cropping to the brain, intensity "
                    "statistics and Nyúl landmarks per channel, tumour presence) of raw datasets and write "
                    "$synthUNet_preprocessed/DatasetXXX_Name/dataset_fingerprint.json.")
    parser.add_argument("-d", "--dataset", nargs="+", required=True,
                        help="dataset id(s) (e.g. 501) or full name(s) (e.g. Dataset501_BraTSPhantom)")
    parser.add_argument("-np", "--num_processes", type=int, default=2,
                        help="number of worker processes reading cases in parallel (default: 2; 1 = no pool)")
    parser.add_argument("--overwrite", "--clean", dest="overwrite", action="store_true",
                        help="recompute even if dataset_fingerprint.json exists (default: keep the existing one)")
    parser.add_argument("--verify_dataset_integrity", action="store_true",
                        help="check the raw dataset with synthunet.dataset.validate first and stop on problems")
    parser.add_argument("--no_progress", action="store_true", help="do not show a progress bar")
    accept_nnunet_flags(parser, {"--verbose": "a progress bar and a summary line per dataset are printed"})
    refuse_nnunet_flags(parser, {"-fpe": "synthUNet has one fingerprint extractor (brain crop, intensity statistics, "
                                         "Nyul landmarks)"})
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def action() -> None:
        for dataset in args.dataset:
            fingerprint = extract_fingerprint(dataset, num_processes=args.num_processes, overwrite=args.overwrite,
                                              verify_dataset_integrity=args.verify_dataset_integrity,
                                              progress=not args.no_progress)
            print(f"{fingerprint['dataset_name']}: {fingerprint['num_cases']} cases, median spacing "
                  f"{[round(v, 3) for v in fingerprint['median_spacing']]}, median shape after cropping "
                  f"{fingerprint['median_shape_after_cropping']}")

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
