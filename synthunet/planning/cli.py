"""``synth_plan_experiment``: plan configurations, patch and batch sizes, networks and schedules."""
from __future__ import annotations

import argparse
import warnings
from typing import Sequence

from synthunet.cli_support import run_cli
from synthunet.cli_support.nnunet_flags import refuse_nnunet_flags
from synthunet.dataset.identifiers import DEFAULT_PLANS
from synthunet.errors import InputError
from synthunet.planning.configuration import DEFAULT_ARCHITECTURE, PLANNED_ARCHITECTURES
from synthunet.planning.experiment import plan_experiment
from synthunet.planning.layers import DISCRIMINATORS
from synthunet.planning.planner import CONFIGURATIONS, DEFAULT_PLANNER, PLANNERS, get_planner
from synthunet.planning.timing import CpuSpeed

DESCRIPTION = """\
Plan the experiment for a dataset from its fingerprint (run synth_extract_fingerprint first) and write
$synthUNet_preprocessed/DatasetXXX_Name/{plans_name}.json: per configuration the target spacing, patch and
batch size, the U-Net topology, the training schedule and the estimated memory, FLOPs and step time.

The plans are made for one device. On a GPU (--device cuda) the patch and batch fill --gpu_memory_gb.
On a CPU (--device cpu) memory (--cpu_memory_gb) rarely binds; time does: a short probe measures this
machine's speed, and the width (32 -> 16 -> 8 base features), patch and batch are chosen so that one
training step takes at most --step_time_budget_s; the schedule fills --cpu_training_minutes per fold.
When planning for CPU, {plans_name}_gpu.json is written as well: the same preprocessed data planned for a
GPU of --gpu_memory_gb, so a model can be trained elsewhere without preprocessing again."""


#: nnU-Net's planning flags that synthUNet does not have, and why (documentation/for_nnunet_users.md)
PLAN_REFUSED = {
    "-preprocessor_name": "synthUNet has one preprocessor (crop to the brain, Nyul standardisation, resampling)",
    "-overwrite_target_spacing": "the planner chooses the spacing; to change it, register a planner subclass and "
                                 "choose it with -pl",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synth_plan_experiment", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", required=True, nargs="+",
                        help="dataset id(s) or name(s), e.g. 501 or Dataset501_BraTSPhantom")
    parser.add_argument("-c", "--configurations", nargs="+", default=list(CONFIGURATIONS), choices=CONFIGURATIONS,
                        metavar="CONFIG",
                        help=f"configurations to plan, from {', '.join(CONFIGURATIONS)} (default: all; 3d_lowres is "
                             "written only when the 3d_fullres patch covers less than 25%% of the median image)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="device the plans are for (default: cuda if torch sees a GPU, else cpu)")
    parser.add_argument("--gpu_memory_gb", "-gpu_memory_target", dest="gpu_memory_gb", type=float, default=8.0,
                        help="GPU memory budget in GB for GPU plans, including the CUDA context (default: 8, as "
                             "nnU-Net)")
    parser.add_argument("--cpu_memory_gb", type=float, default=8.0,
                        help="RAM budget in GB for the training process in CPU plans (default: 8)")
    parser.add_argument("--step_time_budget_s", type=float, default=1.0,
                        help="CPU plans: the longest a training step (forward + backward + optimiser) may take, "
                             "in seconds, as estimated from the probe (default: 1.0)")
    parser.add_argument("--cpu_training_minutes", type=float, default=10.0,
                        help="CPU plans: wall-clock minutes of training per fold; sets num_epochs from the "
                             "estimated step time (default: 10)")
    parser.add_argument("--cpu_gflops", type=float, nargs="+", default=None, metavar="GFLOPS",
                        help="CPU plans: skip the probe and use this achieved speed in GFLOP/s for base-32 networks "
                             "(optionally a second value for base-8 networks), e.g. to get the same plans again "
                             "or to plan for another machine (default: measure with the probe)")
    parser.add_argument("--num_slices", type=int, default=3,
                        help="2.5d: neighbouring slices per input sequence, odd (default: 3; input channels = "
                             "num_slices x number of input sequences)")
    parser.add_argument("--gan", nargs="?", const="patchgan", default=None, choices=DISCRIMINATORS,
                        help="count a discriminator in the memory and time estimates, for adversarial trainers: "
                             "patchgan (the default when the flag is given alone: the conditional PatchGAN of "
                             "SynthTrainer_GAN and the Combined recipes, 5 layers, in every step) or realesrgan "
                             "(Real-ESRGAN's U-Net discriminator of SynthTrainer_SRGAN and SynthTrainer_SRGANNoVGG, "
                             "as wide as the generator, in the last 30 %% of the steps)")
    parser.add_argument("--architecture", choices=PLANNED_ARCHITECTURES, default=DEFAULT_ARCHITECTURE,
                        help="network to plan and size (default: unet). hrfcn (seed 001) and dilated_fcn (seed 002) "
                             "replace the U-Net of the 3D configurations, unet25d_brasyn (seed 000) that of 2.5d, "
                             "rrdb (ESRGAN's generator, seed 004) that of every configuration, angan (AN-GAN's "
                             "generator, seed 003, for SynthTrainer_ANGAN) that of 2.5d; "
                             "the other configurations keep the U-Net. The plans read the default plans' "
                             "preprocessed data. See documentation/architectures.md")
    parser.add_argument("-p", "--plans_name", "--plans", "-overwrite_plans_name", dest="plans_name", default=None,
                        help=f"plans file name without .json (default: {DEFAULT_PLANS}, or "
                             f"{DEFAULT_PLANS}_{{architecture}} with --architecture); train and predict with "
                             "-p PLANS_NAME")
    parser.add_argument("-pl", "--planner", default=DEFAULT_PLANNER,
                        help=f"planner class, by name (default: {DEFAULT_PLANNER}; known: "
                             f"{', '.join(sorted(PLANNERS))}). Until now -pl was the plans name: a value that is no "
                             "planner and does not look like one is still read that way, with a warning; use -p")
    parser.add_argument("--no_gpu_plans", action="store_true",
                        help="CPU plans: do not also write {plans_name}_gpu.json")
    parser.add_argument("--overwrite", action="store_true",
                        help="plan again even if the plans file exists (default: keep the existing file)")
    refuse_nnunet_flags(parser, PLAN_REFUSED)
    return parser


def resolve_planner_args(args: argparse.Namespace) -> None:
    """Check ``-pl``; read an old-style ``-pl PLANS_NAME`` as the plans name, with a FutureWarning.

    ``-pl`` chooses the planner class (as in nnU-Net); it used to be the plans name. A value that is no
    registered planner and does not look like a planner class name (no 'planner' in it), given without ``-p``,
    is taken in the old meaning. Anything else unknown is an :class:`UnknownPlannerError` listing the planners.
    """
    name = getattr(args, "planner", DEFAULT_PLANNER)
    if name in PLANNERS:
        return
    if "planner" not in name.lower() and not getattr(args, "plans_name", None):
        warnings.warn(f"-pl {name}: -pl now chooses the planner class, as in nnU-Net (known: "
                      f"{', '.join(sorted(PLANNERS))}); {name!r} is none, so it is read as the plans name, -pl's "
                      f"old meaning. This will stop working: use -p {name}", FutureWarning, stacklevel=2)
        args.plans_name, args.planner = name, DEFAULT_PLANNER
        return
    get_planner(name)  # raises UnknownPlannerError with the known planners


def plans_name_from_args(args: argparse.Namespace) -> str:
    """``-p`` when given, else ``synthUNetPlans`` (U-Net) or ``synthUNetPlans_{architecture}``."""
    resolve_planner_args(args)
    if getattr(args, "plans_name", None):
        return args.plans_name
    architecture = getattr(args, "architecture", DEFAULT_ARCHITECTURE)
    return DEFAULT_PLANS if architecture == DEFAULT_ARCHITECTURE else f"{DEFAULT_PLANS}_{architecture}"


def plan_from_args(dataset: str | int, args: argparse.Namespace) -> dict:
    """Plan one dataset with the options of :func:`build_parser` (shared with synth_plan_and_preprocess)."""
    args.plans_name = plans_name_from_args(args)
    cpu_speed = None
    if args.cpu_gflops is not None:
        if len(args.cpu_gflops) > 2 or min(args.cpu_gflops) <= 0:
            raise InputError("--cpu_gflops takes one or two positive numbers")
        cpu_speed = CpuSpeed(*args.cpu_gflops)
    return plan_experiment(dataset, configurations=args.configurations, device=args.device,
                           gpu_memory_gb=args.gpu_memory_gb, cpu_memory_gb=args.cpu_memory_gb,
                           step_time_budget_s=args.step_time_budget_s, num_slices=args.num_slices,
                           cpu_training_minutes=args.cpu_training_minutes, gan=args.gan,
                           plans_name=args.plans_name, gpu_plans=not args.no_gpu_plans,
                           overwrite=args.overwrite, cpu_speed=cpu_speed, verbose=True,
                           architecture=getattr(args, "architecture", DEFAULT_ARCHITECTURE), planner=args.planner)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synth_plan_experiment``."""
    args = build_parser().parse_args(argv)

    def action() -> None:
        resolve_planner_args(args)
        for dataset in args.dataset:
            print(summary(plan_from_args(dataset, args)))

    return run_cli(action)


def summary(plans: dict) -> str:
    """One line per configuration: patch, batch, width, estimates."""
    lines = [f"{plans.get('dataset_name', '')} planned for {plans['planned_for']['device']}:"]
    for name, block in plans["configurations"].items():
        estimates, kwargs = block["estimates"], block["architecture"]["kwargs"]
        features = kwargs.get("features_per_stage", kwargs.get("features"))
        step = f", ~{estimates['step_time_s']} s/step" if estimates.get("step_time_s") is not None else ""
        lines.append(f"  {name}: patch {block['patch_size']} batch {block['batch_size']} spacing {block['spacing']} "
                     f"{block['architecture']['name']} features {features}, ~{estimates['device_memory_gb']} GB{step}, "
                     f"{block['training']['num_epochs']} x {block['training']['iterations_per_epoch']} iterations")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
