"""Training throughput: the batch pipeline alone, and real training steps with their data-wait fraction.

Two measurements (documentation/training.md, "The batch pipeline"):

* ``--pipeline``: how fast ONE data worker prepares batches of a configuration's shape (choose, draw, read
  the patch region from the preprocessed arrays), and how long the augmentation of that batch then takes
  on ``--device`` (``BatchAugmenter``). With batchgenerators installed (``pip install -e .[test]``), the
  previous pipeline is timed on the same samples for comparison: batchgenerators' ``SpatialTransform``
  (cubic, on the worst-case region that rotation and scaling can need) + its intensity transforms, all on
  the worker's CPU, as synthUNet did up to 2026-12-04. Shapes come from the plans or from ``--shape``
  (e.g. an H200 plan's ``3d_fullres:80x96x80:2``).
* steps (default): the real ``SynthTrainer`` step (network from the plans, background workers, augmentation
  on the device) for a few iterations per configuration, without checkpoints: iterations/s and the share
  of step time spent waiting for data.

    python benchmarks/train_throughput.py                                  # steps, 2.5d and 3d_fullres, T1C
    python benchmarks/train_throughput.py -c 3d_fullres --iterations 100 --workers 8 --device cuda
    python benchmarks/train_throughput.py --pipeline --shape 3d_fullres:80x96x80:2 2.5d:96x96:86

Needs ``$synthUNet_preprocessed`` (and the other two folders) with the dataset planned and preprocessed.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


# ================================================================ real training steps
def measure(dataset: str, configuration: str, target: str, iterations: int, warmup: int, workers: int | None,
            device: str, trainer_name: str, plans: str = "synthUNetPlans") -> dict:
    from synthunet.training import Experiment, get_trainer_class

    experiment = Experiment.resolve(dataset, configuration, target, 0, trainer_name=trainer_name, plans_name=plans)
    trainer = get_trainer_class(trainer_name)(experiment, device=device, num_workers=workers, final_validation=False)
    trainer.initialize()
    trainer.network.train()
    batches = trainer.training_batches()
    for _ in range(warmup):
        trainer.train_step(trainer.next_training_batch(batches))
    timer = trainer.wait_timer
    timer.reset()
    started = time.perf_counter()
    for _ in range(iterations):
        trainer.train_step(trainer.next_training_batch(batches))
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        timer.step_done()
    elapsed = time.perf_counter() - started
    # one data worker's share, in this process: choose, draw, read (and augment, when training on the CPU)
    per_batch = _per_batch(trainer.train_stream.next_batch, max(3, iterations // 3))
    trainer.close()
    return {"configuration": configuration, "target": target, "trainer": trainer_name, "device": str(trainer.device),
            "patch_size": list(experiment.config.patch_size), "batch_size": trainer.batch_size,
            "input_channels": experiment.num_input_channels, "workers": trainer.num_workers,
            "torch_threads": torch.get_num_threads(), "iterations": iterations,
            "iterations_per_s": iterations / elapsed, "step_time_s": elapsed / iterations,
            "data_wait_fraction": timer.fraction, "one_worker_batch_time_s": per_batch,
            "planned_step_time_s": experiment.config.estimates.get("step_time_s")}


# ================================================================ the pipeline alone
def _sampler(dataset: str, configuration: str, target: str, patch: list[int], plans: str):
    from synthunet.training import Experiment
    from synthunet.training.data import CaseCache, PatchSampler

    experiment = Experiment.resolve(dataset, configuration, target, 0, plans_name=plans)
    train_cases, _ = experiment.fold_cases()
    axes = list(experiment.config.slicing_axes) if len(patch) == 2 else None
    return experiment, PatchSampler(CaseCache(experiment.data_folder), train_cases, experiment.input_indices,
                                    experiment.target_index, patch, num_slices=experiment.num_slices if axes else 1,
                                    slicing_axes=axes)


def _legacy_pipeline(patch: list[int], params, intensity: bool):
    """batchgenerators' spatial (cubic, worst-case region) + intensity transforms, as a callable on a sample
    batch, and that region's size; None when batchgenerators is not installed."""
    try:
        from batchgenerators.transforms.abstract_transforms import Compose
        from batchgenerators.transforms.color_transforms import (BrightnessMultiplicativeTransform,
                                                                 ContrastAugmentationTransform, GammaTransform)
        from batchgenerators.transforms.noise_transforms import GaussianNoiseTransform
        from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
    except ImportError:
        return None, None
    angle = (-params.max_rotation, params.max_rotation)
    transforms = [SpatialTransform(patch, patch_center_dist_from_border=None, do_elastic_deform=False,
                                   do_rotation=True, angle_x=angle, angle_y=angle, angle_z=angle,
                                   p_rot_per_sample=params.p_rotation, do_scale=True, scale=params.scale,
                                   p_scale_per_sample=params.p_scale, border_mode_data="constant", border_cval_data=0,
                                   order_data=3, border_mode_seg="constant", border_cval_seg=-1, order_seg=0,
                                   random_crop=False),
                  MirrorTransform(axes=tuple(range(len(patch))))]
    if intensity:
        transforms += [GaussianNoiseTransform(params.noise_variance, p_per_sample=params.p_noise),
                       BrightnessMultiplicativeTransform(params.brightness, per_channel=True,
                                                         p_per_sample=params.p_brightness),
                       ContrastAugmentationTransform(params.contrast, per_channel=True, p_per_sample=params.p_contrast),
                       GammaTransform(params.gamma, False, True, retain_stats=True, p_per_sample=params.p_gamma)]
    # the region the old pipeline read: every axis rotated in turn by the largest angle, then the largest zoom-out
    extent = [float(p) for p in patch]
    c, s = abs(np.cos(params.max_rotation)), abs(np.sin(params.max_rotation))
    for a, b in ([(0, 1)] if len(patch) == 2 else [(1, 2), (0, 2), (0, 1)]):
        extent[a], extent[b] = c * extent[a] + s * extent[b], s * extent[a] + c * extent[b]
    region = [int(max(np.ceil(e * max(params.scale)), p)) for e, p in zip(extent, patch)]
    return Compose(transforms), region


def _per_batch(function, count: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(count):
        function()
    return (time.perf_counter() - started) / count


def measure_pipeline(dataset: str, configuration: str, target: str, patch: list[int], batch_size: int,
                     count: int, device: str, intensity: bool, legacy: bool, plans: str) -> dict:
    """Seconds per batch of one worker (new and, if available, old pipeline) and of the device augmentation."""
    from synthunet.training.data import AugmentationParams, BatchAugmenter, TrainingBatches

    params = AugmentationParams()
    experiment, sampler = _sampler(dataset, configuration, target, patch, plans)
    target_device = torch.device(device)
    dtype = torch.float16 if target_device.type == "cuda" else torch.float32
    stream = TrainingBatches(sampler, batch_size, intensity=intensity, augmentation_params=params, dtype=dtype)
    worker = _per_batch(stream.next_batch, count)
    augmenter = BatchAugmenter(patch)
    batches = [stream.next_batch() for _ in range(min(count, 8))]
    used = [0]

    def augment():  # a fresh dict per call: the augmenter consumes the batch's draws
        batch = batches[used[0] % len(batches)]
        used[0] += 1
        augmenter({k: (v.to(target_device) if torch.is_tensor(v) else
                       {n: t.to(target_device) for n, t in v.items()} if isinstance(v, dict) else v)
                   for k, v in batch.items()})
        if target_device.type == "cuda":
            torch.cuda.synchronize()

    on_device = _per_batch(augment, count)
    row = {"configuration": configuration, "patch_size": list(patch), "batch_size": batch_size,
           "channels_read": len(sampler.input_indices) + 1, "intensity": intensity, "device": str(target_device),
           "worker_batch_s": worker, "device_augment_s": on_device, "batches": count}
    legacy_transform, region = _legacy_pipeline(patch, params, intensity) if legacy else (None, None)
    if legacy_transform is not None:
        from synthunet.training.data.augmentation import split_target

        def old_batch():
            specs = [sampler.random_spec() for _ in range(batch_size)]
            raw = sampler.batch(specs, region)
            out = legacy_transform(data=raw["data"], seg=raw["seg"].astype(np.float32))
            return split_target({"data": out["data"], "seg": np.rint(out["seg"]).astype(np.int8)})

        row.update(legacy_worker_batch_s=_per_batch(old_batch, count), legacy_region=region)
        row["worker_speedup"] = row["legacy_worker_batch_s"] / worker
    return row


def _parse_shape(text: str) -> tuple[str, list[int], int]:
    """``CONFIG:AxBxC:BATCH`` -> (configuration, patch, batch)."""
    try:
        configuration, patch, batch = text.split(":")
        return configuration, [int(p) for p in patch.split("x")], int(batch)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape takes CONFIG:AxBxC:BATCH (e.g. 3d_fullres:80x96x80:2), got {text!r}")


def run_pipeline(args) -> list[dict]:
    from synthunet.training import Experiment

    shapes = list(args.shape or [])
    if not shapes:
        for configuration in args.configurations:
            config = Experiment.resolve(args.dataset, configuration, args.target, 0, plans_name=args.plans).config
            shapes.append((configuration, list(config.patch_size), config.batch_size))
    rows = []
    for configuration, patch, batch in shapes:
        config = Experiment.resolve(args.dataset, configuration, args.target, 0, plans_name=args.plans).config
        # as the trainer does: intensity augmentation off when the plans name a prior
        intensity = not config.architecture.prior if args.intensity is None else args.intensity
        row = measure_pipeline(args.dataset, configuration, args.target, patch, batch, args.batches, args.device,
                               intensity, not args.no_legacy, args.plans)
        rows.append(row)
        old = (f"; old pipeline {row['legacy_worker_batch_s']:.3f} s (region {row['legacy_region']}): "
               f"{row['worker_speedup']:.1f}x" if "legacy_worker_batch_s" in row else "")
        shape = "x".join(map(str, patch))
        print(f"{configuration:>11} {shape} x {batch}: one worker {row['worker_batch_s']:.4f} s/batch"
              f" ({1 / row['worker_batch_s']:.1f} batches/s), augmentation on {row['device']} "
              f"{row['device_augment_s']:.4f} s/batch, intensity {'on' if intensity else 'off'}{old}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dataset", default="501")
    parser.add_argument("-c", "--configurations", nargs="+", default=["2.5d", "3d_fullres"])
    parser.add_argument("-t", "--target", default="T1C")
    parser.add_argument("-p", "--plans", default="synthUNetPlans")
    parser.add_argument("-tr", "--trainer", default="SynthTrainer")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="data workers (default: the trainer's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the training process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pipeline", action="store_true", help="time the batch pipeline alone (no training)")
    parser.add_argument("--shape", nargs="+", type=_parse_shape, default=None, metavar="CONFIG:AxBxC:BATCH",
                        help="--pipeline: batch shapes to time (default: the plans' configurations)")
    parser.add_argument("--batches", type=int, default=20, help="--pipeline: batches to time per shape")
    parser.add_argument("--intensity", type=lambda v: v.lower() in ("1", "on", "true"), default=None,
                        help="--pipeline: intensity augmentation on/off (default: as the trainer would)")
    parser.add_argument("--no_legacy", action="store_true", help="--pipeline: do not time the old pipeline")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pipeline:
        results = run_pipeline(args)
    else:
        results = []
        for configuration in args.configurations:
            result = measure(args.dataset, configuration, args.target, args.iterations, args.warmup, args.workers,
                             args.device, args.trainer, args.plans)
            results.append(result)
            print(f"{configuration:>11}: {result['iterations_per_s']:.2f} it/s ({result['step_time_s']:.3f} s/step, "
                  f"planned {result['planned_step_time_s']}), data wait {100 * result['data_wait_fraction']:.1f} %, "
                  f"one worker makes a batch in {result['one_worker_batch_time_s']:.3f} s "
                  f"[patch {result['patch_size']} x {result['batch_size']}, {result['workers']} workers, "
                  f"{result['torch_threads']} torch threads, {result['device']}]", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
