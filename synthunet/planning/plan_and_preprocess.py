"""``synth_plan_and_preprocess``: validate -> fingerprint -> plan -> preprocess, in one command."""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import accept_nnunet_flags, refuse_nnunet_flags
from synthunet.planning import cli as planning_cli

DESCRIPTION = """\
Self-configuration in one command, for each dataset given with -d:
  1. validate the raw dataset (synth_validate_dataset): every problem is listed before anything is written;
  2. extract the dataset fingerprint (synth_extract_fingerprint);
  3. plan the configurations (synth_plan_experiment; options below);
  4. preprocess the training cases for the planned configurations (synth_preprocess).
Finished work is reused: an existing fingerprint and plans are kept and complete preprocessed cases are
skipped unless --overwrite is given. See documentation/planning.md and documentation/preprocessing.md."""


#: nnU-Net's nnUNetv2_plan_and_preprocess flags that synth_plan_and_preprocess does not have, and why
PLAN_AND_PREPROCESS_REFUSED = {
    "-fpe": "synthUNet has one fingerprint extractor (brain crop, intensity statistics, Nyul landmarks)",
    "-npfp": "-np sets the worker processes of every step (validation, fingerprint, preprocessing)",
    "--no_pp": "to stop after planning, run synth_extract_fingerprint and synth_plan_experiment",
}


def build_parser() -> argparse.ArgumentParser:
    """The planning options of synth_plan_experiment plus the validation and preprocessing ones."""
    parser = argparse.ArgumentParser(prog="synth_plan_and_preprocess", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[planning_cli.build_parser()], conflict_handler="resolve")
    parser.add_argument("-np", "--num_processes", type=int, default=2,
                        help="worker processes for validation, fingerprinting and preprocessing (default 2)")
    parser.add_argument("--skip_validation", action="store_true",
                        help="do not validate the raw dataset first (default: validate)")
    parser.add_argument("--verify_dataset_integrity", action="store_true",
                        help="accepted for nnU-Net users; validation runs by default anyway")
    parser.add_argument("--overwrite", "--clean", dest="overwrite", action="store_true",
                        help="recompute the fingerprint, plan again and preprocess every case again")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    accept_nnunet_flags(parser, {"--verbose": "the steps and their timings are always printed"})
    refuse_nnunet_flags(parser, PLAN_AND_PREPROCESS_REFUSED)
    return parser


def plan_and_preprocess(dataset: str | int, args: argparse.Namespace) -> dict:
    """Run the four steps for one dataset; return the plans."""
    from synthunet.dataset.identifiers import raw_dataset_folder
    from synthunet.dataset.validate import raise_if_invalid
    from synthunet.fingerprint.extractor import extract_fingerprint
    from synthunet.preprocessing import preprocess_dataset

    progress = not args.no_progress
    started = time.time()
    if not args.skip_validation:
        raise_if_invalid(raw_dataset_folder(dataset), args.num_processes, progress)
        print(f"[{time.time() - started:5.0f} s] dataset is valid")
    extract_fingerprint(dataset, num_processes=args.num_processes, overwrite=args.overwrite, progress=progress)
    print(f"[{time.time() - started:5.0f} s] fingerprint ready")
    plans = planning_cli.plan_from_args(dataset, args)
    print(planning_cli.summary(plans))
    configurations = [c for c in args.configurations if c in plans["configurations"]]
    if "3d_fullres" in configurations and "3d_lowres" in plans["configurations"]:
        configurations.append("3d_lowres")
    result = preprocess_dataset(dataset, plans_name=args.plans_name, configurations=configurations,
                                num_processes=args.num_processes, overwrite=args.overwrite, progress=progress)
    for identifier, counts in result.items():
        print(f"[{time.time() - started:5.0f} s] {identifier}: {counts['processed']} case(s) preprocessed, "
              f"{counts['skipped']} already done")
    return plans


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_plan_and_preprocess``."""
    args = build_parser().parse_args(argv)

    def action() -> None:
        planning_cli.resolve_planner_args(args)  # an unknown -pl fails before any step runs
        for dataset in args.dataset:
            plan_and_preprocess(dataset, args)

    return run_cli(action)


if __name__ == "__main__":
    raise SystemExit(main())
