"""SynthTrainer_ANGAN on a tiny unpaired problem whose answer is known (issue 19, item 4): does the recipe recover
a monotone intensity mapping in a few hundred CPU steps?

    python benchmarks/unpaired_toy.py --steps 600 --seeds 0 1 2 --variants recipe no_support_mask -o toy.md

The dataset (written under ``--work``): 12 cases of 20 x 24 x 22 voxels, an ellipsoidal brain split into three
"tissues" by thresholds of a smooth random field (20 / 30 / 50 % of the brain). T2F shows them at
``SOURCE_LEVELS``, T2W at ``TARGET_LEVELS`` (plus 1 % noise): T2W = f(T2F) with f increasing and known. The recipe
learns T2W from T2F on unpaired batches (source and target patches from different cases), 2.5d, 16 x 16 patches, a
small AN generator; then every axial slice of the fold's validation cases is predicted and compared with the known
T2W inside the brain. A monotone closed form (histogram matching) recovers f exactly here. The planned recipe starts
G from tissue matching fitted without pairs (the ``tissue_matched_input`` prior), which on this toy chooses histogram
matching, so it measures whether the adversarial training keeps the mapping; ``no_prior`` measures whether it finds it from scratch, in minutes instead
of a 30-minute run on Dataset501.

Variants: ``recipe`` (as planned: AN generator on the unpaired tissue_matched_input prior), ``no_prior`` (the AN generator
alone: the plans before the twelfth session); small subclasses of the recipe without the prior:
``no_support_mask`` (generator outputs not set to 0 outside the source's support: the behaviour before the
eleventh session), ``intensity_augmentation_off``, ``identity_loss`` (CycleGAN's identity term, weight 5).
Rows: brain MAE, correlation with the true T2W, the median prediction per tissue (truth: ``TARGET_LEVELS``) and
whether the tissues come out in the right order.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

SOURCE_LEVELS = (0.25, 0.5, 0.8)
TARGET_LEVELS = (0.15, 0.35, 0.9)
TISSUE_FRACTIONS = (0.2, 0.3, 0.5)
SHAPE = (20, 24, 22)
DATASET_ID, DATASET = 996, "Dataset996_UnpairedToy"
CHANNELS = ("T1N", "T1C", "T2W", "T2F")
VARIANTS = ("recipe", "no_prior", "no_support_mask", "intensity_augmentation_off", "identity_loss")
#: the plans the variants train on: the recipe's has the tissue_matched_input prior (as plans give angan), every other
#: variant's has none (as the plans before the twelfth session, with which they were measured)
PLANS = {"recipe": "synthUNetPlans_angan", "no_prior": "synthUNetPlans_angan_noprior"}


def ellipsoid(shape: Sequence[int], radii: Sequence[float] = (0.8, 0.85, 0.75)) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return sum((g / r) ** 2 for g, r in zip(grids, radii)) < 1


def toy_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(data (4, *SHAPE) float32: T1N, T1C = T2F = source levels, T2W = target levels; seg (1, *SHAPE) int8)."""
    brain = ellipsoid(SHAPE)
    field = gaussian_filter(rng.normal(size=SHAPE), 1.5)
    tissue = np.digitize(field, np.quantile(field[brain], np.cumsum(TISSUE_FRACTIONS)[:-1]))
    source = np.asarray(SOURCE_LEVELS)[tissue] + rng.normal(scale=0.01, size=SHAPE)
    target = np.asarray(TARGET_LEVELS)[tissue] + rng.normal(scale=0.01, size=SHAPE)
    data = np.stack([source, source, target, source]).astype(np.float32)
    data[:, ~brain] = 0
    return data, np.where(brain, 0, -1).astype(np.int8)[None]


def toy_plans(steps: int, prior: str | None = "tissue_matched_input") -> dict:
    common = {"data_identifier": "synthUNetPlans_3d_fullres", "spacing": [1.0, 1.0, 1.0],
              "median_shape": list(SHAPE), "batch_size": 2,
              "resampling": {"order_data": 3, "order_seg": 0, "separate_z_anisotropy_threshold": 3.0}}
    training = {"optimizer": "adamw", "initial_lr": 1e-3, "weight_decay": 1e-4, "lr_schedule": "poly",
                "num_epochs": max(1, steps // 50), "iterations_per_epoch": min(steps, 50),
                "val_iterations_per_epoch": 1, "oversample_tumour": 0.0, "grad_clip": 12.0}
    unet = {"name": "unet", "kwargs": {"n_stages": 2, "features_per_stage": [4, 8], "kernel_sizes": [[3] * 3] * 2,
                                       "strides": [[1] * 3, [2] * 3], "n_conv_per_stage": 1,
                                       "n_conv_per_stage_decoder": 1, "norm": "instance",
                                       "nonlinearity": "leaky_relu"}}
    angan = {"name": "angan", "kwargs": {"features": [8, 16, 16], "n_res_blocks": 2, "mask_hidden": 8},
             **({"prior": prior} if prior else {})}
    return {"dataset_name": DATASET, "plans_name": "synthUNetPlans_angan",
            "channel_names": {str(i): c for i, c in enumerate(CHANNELS)}, "label_values": [0],
            "configurations": {
                "3d_fullres": {**common, "dimension": 3, "patch_size": [16, 16, 16], "architecture": unet,
                               "training": training},
                "2.5d": {**common, "dimension": 2, "num_slices": 3, "slicing_axes": [0, 1, 2],
                         "patch_size": [16, 16], "architecture": angan, "training": training}}}


def write_dataset(root: Path, steps: int, num_cases: int = 12, seed: int = 0) -> None:
    """The preprocessed toy dataset and its plans under ``root/preprocessed`` (rewritten every run)."""
    from synthunet.preprocessing.storage import save_array

    folder = root / "preprocessed" / DATASET
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "synthUNetPlans_3d_fullres").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): c for i, c in enumerate(CHANNELS)}, "labels": {"background": 0},
        "numTraining": num_cases, "file_ending": ".nii.gz", "name": "UnpairedToy"}))
    (folder / f"{PLANS['recipe']}.json").write_text(json.dumps(toy_plans(steps)))
    (folder / f"{PLANS['no_prior']}.json").write_text(json.dumps({**toy_plans(steps, prior=None),
                                                                  "plans_name": PLANS["no_prior"]}))
    rng = np.random.default_rng(seed)
    for index in range(num_cases):
        data, seg = toy_case(rng)
        save_array(data, folder / "synthUNetPlans_3d_fullres" / f"case_{index:03d}")
        save_array(seg, folder / "synthUNetPlans_3d_fullres" / f"case_{index:03d}_seg")
        (folder / "synthUNetPlans_3d_fullres" / f"case_{index:03d}.json").write_text(
            json.dumps({"case_id": f"case_{index:03d}"}))


def variant_class(name: str):
    """The recipe, or a subclass that changes one thing."""
    from synthunet.training.data.augmentation import without_intensity_augmentation
    from synthunet.training.trainers.unpaired import SynthTrainer_ANGAN

    changes = {"recipe": {}, "no_prior": {}, "no_support_mask": {"support_mask": False},
               "intensity_augmentation_off": {"augmentation": without_intensity_augmentation(
                   SynthTrainer_ANGAN.augmentation)},
               "identity_loss": {"identity_weight": 5.0}}[name]
    return type(f"SynthTrainer_ANGAN_{name}", (SynthTrainer_ANGAN,), changes)


def predict_validation_cases(network, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """G on every axial slice of fold 0's validation cases (3-slice T2F stacks, in-plane padded to a multiple of 4):
    (predictions, true T2W) inside the brain."""
    import torch

    from synthunet.preprocessing.storage import open_array

    folder = root / "preprocessed" / DATASET
    cases = json.loads((folder / "splits_final.json").read_text())[0]["val"]
    predictions, truth = [], []
    network.eval()
    with torch.no_grad():
        for case in cases:
            data = np.asarray(open_array(folder / "synthUNetPlans_3d_fullres" / case))
            z, y, x = data.shape[1:]
            source = np.pad(data[3], ((1, 1), (0, -y % 4), (0, -x % 4)))
            stacks = torch.from_numpy(np.stack([source[i:i + 3] for i in range(z)]))
            output = network(stacks)[:, 0, :y, :x].numpy()
            brain = data[3] > 0
            predictions.append(output[brain])
            truth.append(data[2][brain])
    return np.concatenate(predictions), np.concatenate(truth)


def run_one(variant: str, seed: int, steps: int, work: Path) -> dict:
    """Train ``variant`` with ``seed`` for ``steps`` unpaired steps; score it on the validation cases."""
    import random

    import torch

    from synthunet.training import Experiment

    results = work / "results" / f"{variant}_seed{seed}"
    shutil.rmtree(results, ignore_errors=True)
    os.environ.update({"synthUNet_raw": str(work / "raw"), "synthUNet_preprocessed": str(work / "preprocessed"),
                       "synthUNet_results": str(results), "SYNTHUNET_NUM_WORKERS": "0"})
    (work / "raw").mkdir(parents=True, exist_ok=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    plans = PLANS["recipe" if variant == "recipe" else "no_prior"]
    experiment = Experiment.resolve(DATASET_ID, "2.5d", "T2W", 0, trainer_name="SynthTrainer_ANGAN",
                                    plans_name=plans, inputs=["T2F"])
    trainer = variant_class(variant)(experiment, device="cpu", final_validation=False)
    started = time.time()
    try:
        trainer.run_training()
        prediction, truth = predict_validation_cases(trainer.network, work)
    finally:
        trainer.close()
    tissue = np.abs(truth[:, None] - np.asarray(TARGET_LEVELS)[None]).argmin(axis=1)
    medians = [float(np.median(prediction[tissue == t])) for t in range(len(TARGET_LEVELS))]
    return {"variant": variant, "seed": seed, "steps": steps, "minutes": (time.time() - started) / 60,
            "brain_mae": float(np.abs(prediction - truth).mean()),
            "correlation": float(np.corrcoef(prediction, truth)[0, 1]),
            "tissue_medians": medians, "order_recovered": bool(np.all(np.diff(medians) > 0))}


def table(rows: list[dict]) -> str:
    lines = [f"| variant | seed | steps | brain MAE | correlation | median per tissue (truth {list(TARGET_LEVELS)}) "
             "| order recovered | minutes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['brain_mae']:.3f} | {r['correlation']:+.3f} "
                     f"| {', '.join(f'{m:.2f}' for m in r['tissue_medians'])} | {'yes' if r['order_recovered'] else 'no'}"
                     f" | {r['minutes']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="unpaired training steps per run (default 600)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["recipe"], choices=VARIANTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/synthunet_unpaired_toy"))
    parser.add_argument("-o", "--output", type=Path, help="markdown table (a .json beside it)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    import torch

    torch.set_num_threads(1)
    write_dataset(args.work, args.steps)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            rows.append(run_one(variant, seed, args.steps, args.work))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    if args.output:
        args.output.write_text(table(rows) + "\n")
        args.output.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
