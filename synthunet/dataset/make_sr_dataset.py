"""``synth_make_sr_dataset``: a super-resolution dataset (degraded sequence -> original) from a raw dataset."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from synthunet.cli_support import run_cli
from synthunet.dataset.super_resolution import AXES, MODES, Degradation, make_sr_dataset

DESCRIPTION = """\
Turn one sequence of a raw dataset into a super-resolution task: write $synthUNet_raw/DatasetXXX_NAME (-o) with
channel 0 = SEQUENCE_LR (the sequence degraded along one voxel axis, noise added, and interpolated back onto the
original grid with cubic B-splines) and channel 1 = SEQUENCE (the original file); labelsTr and masksTr are
copied (masksTr is written from the source's brain when the source has none). Then plan, train and predict as
for any synthesis task, with SEQUENCE as the target. Evaluating the SEQUENCE_LR files against SEQUENCE gives the
cubic-interpolation baseline. See documentation/super_resolution.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synth_make_sr_dataset", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", required=True, help="source raw dataset id or name, e.g. 501")
    parser.add_argument("--sequence", required=True, help="channel to degrade (a channel name of the source, e.g. T2F)")
    parser.add_argument("-o", "--output_id", type=int, required=True, help="id of the dataset to create, e.g. 502")
    parser.add_argument("-n", "--name", default=None,
                        help="name of the new dataset (default: {source name}_SR_{SEQUENCE}_x{factor}{axis})")
    parser.add_argument("--factor", type=int, default=4, help="resolution reduction along the axis, >= 2 (default 4)")
    parser.add_argument("--axis", choices=sorted(AXES), default="z",
                        help="voxel axis to degrade: x, y, z = the image's index axes i, j, k (NIfTI/SimpleITK order; "
                             "array axes 2, 1, 0), not world axes (default z: the slice axis of axial scans)")
    parser.add_argument("--mode", choices=MODES, default="thick",
                        help="thick (default): mean of each block of FACTOR slices (thick slices); kspace: keep the "
                             "1/FACTOR lowest frequencies of the FFT along the axis")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="Gaussian noise on the low-resolution samples, standard deviation as a fraction of the "
                             "case's 99th percentile inside the brain (default 0.01; 0: none)")
    parser.add_argument("--seed", type=int, default=0,
                        help="noise seed; case noise depends only on the seed and the case id (default 0)")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset with the output id (swapped only when the new one is "
                             "complete)")
    parser.add_argument("--skip_validation", action="store_true",
                        help="do not run the dataset validator on the result before it is moved into place")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_make_sr_dataset``."""
    args = build_parser().parse_args(argv)

    def action() -> None:
        degradation = Degradation(factor=args.factor, axis=args.axis, mode=args.mode, noise=args.noise,
                                  seed=args.seed)
        report = make_sr_dataset(args.dataset, args.output_id, args.sequence, degradation, name=args.name,
                                 overwrite=args.overwrite, num_processes=args.num_processes,
                                 progress=not args.no_progress, validate=not args.skip_validation)
        print(f"wrote {report.output_folder} with {len(report.cases)} case(s): channel 0 {report.sequence}_LR "
              f"({degradation.mode}, x{degradation.factor} along voxel axis {degradation.axis}, whose world "
              f"direction (LPS) in the first case is {report.axis_world_direction}), channel 1 {report.sequence}")
        for old in report.replaced:
            print(f"replaced {old}")
        _warn_about_stale_outputs(report.output_folder.name, bool(report.replaced))

    return run_cli(action)


def _warn_about_stale_outputs(name: str, replaced: bool) -> None:
    """A replaced dataset's fingerprint, plans and preprocessed cases would be reused by the next commands."""
    if not replaced:
        return
    from synthunet import paths

    try:
        stale = sorted(paths.preprocessed_folder().glob(f"{name[:10]}*"))
    except paths.PathNotConfiguredError:
        return
    for folder in stale:
        print(f"warning: {folder} holds the fingerprint/plans/preprocessed data of the replaced dataset; run "
              f"synth_plan_and_preprocess -d {name[7:10]} --overwrite (or delete it)", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
