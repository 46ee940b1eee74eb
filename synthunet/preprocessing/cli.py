"""``synth_preprocess``: preprocess the training cases of raw datasets for configurations of a plans file."""
from __future__ import annotations

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import accept_nnunet_flags

import argparse
import sys

from synthunet.dataset.identifiers import DEFAULT_PLANS
from synthunet.preprocessing.dataset_preprocessing import preprocess_dataset
from synthunet.preprocessing.storage import DEFAULT_FORMAT, FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_preprocess",
        description="Crop every training case to the brain, Nyúl-standardise and scale each channel, resample "
                    "to the configuration's spacing and store it in "
                    "$synthUNet_preprocessed/DatasetXXX_Name/{data_identifier}/. Complete cases are skipped, so "
                    "an interrupted run can simply be started again.")
    parser.add_argument("-d", "--dataset", nargs="+", required=True,
                        help="dataset id(s) (e.g. 501) or full name(s) (e.g. Dataset501_BraTSPhantom)")
    parser.add_argument("-c", "--configurations", nargs="+", default=None,
                        help="configurations of the plans to preprocess, e.g. 3d_fullres 2.5d (default: all of "
                             "them); configurations sharing a data_identifier are preprocessed once")
    parser.add_argument("-p", "--plans_name", "--plans", "-plans_name", dest="plans_name", default=DEFAULT_PLANS,
                        help=f"plans file name without .json in the preprocessed dataset folder "
                             f"(default: {DEFAULT_PLANS})")
    parser.add_argument("-np", "--num_processes", type=int, default=2,
                        help="number of worker processes (default: 2; 1 = no pool). Each holds one case in memory")
    parser.add_argument("--overwrite", action="store_true",
                        help="preprocess every case again, even those already complete")
    parser.add_argument("--file_format", choices=FORMATS, default=DEFAULT_FORMAT,
                        help=f"array file format: npy (memory-mapped, fastest patch reads) or b2nd (blosc2, "
                             f"about 2.5x smaller). Default: {DEFAULT_FORMAT}")
    parser.add_argument("--no_progress", action="store_true", help="do not show a progress bar")
    accept_nnunet_flags(parser, {"--verbose": "a progress bar and one summary line per data identifier are printed"})
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def action() -> None:
        for dataset in args.dataset:
            summary = preprocess_dataset(dataset, args.plans_name, args.configurations, args.num_processes,
                                         args.overwrite, progress=not args.no_progress, file_format=args.file_format)
            for identifier, counts in summary.items():
                print(f"{dataset} {identifier}: {counts['processed']} case(s) preprocessed, "
                      f"{counts['skipped']} already complete")

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
