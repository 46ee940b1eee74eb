"""Training throughput: iterations/s and the share of step time spent waiting for data.

Runs the real ``SynthTrainer`` step (network from the plans, augmentation, background workers) for a
few iterations per configuration, without writing checkpoints, and also times the data pipeline alone.

    python benchmarks/train_throughput.py                      # Dataset501, 2.5d and 3d_fullres, target T1C
    python benchmarks/train_throughput.py -d 501 -c 3d_fullres --iterations 30 --workers 2 --device cuda

Needs ``$synthUNet_preprocessed`` (and the other two folders) with the dataset planned and preprocessed.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def measure(dataset: str, configuration: str, target: str, iterations: int, warmup: int, workers: int | None,
            device: str, trainer_name: str) -> dict:
    from synthunet.training import Experiment, get_trainer_class

    experiment = Experiment.resolve(dataset, configuration, target, 0, trainer_name=trainer_name)
    trainer = get_trainer_class(trainer_name)(experiment, device=device, num_workers=workers, final_validation=False)
    trainer.initialize()
    trainer.network.train()
    batches = trainer.training_batches()
    for _ in range(warmup):
        trainer.train_step(trainer.to_device(next(batches)))
    timer = trainer.wait_timer
    timer.reset()
    started = time.perf_counter()
    for _ in range(iterations):
        batch = trainer.to_device(timer.fetch(batches))
        trainer.train_step(batch)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        timer.step_done()
    elapsed = time.perf_counter() - started
    # the data pipeline alone, in this process (0 workers): how fast can one worker produce batches?
    stream = trainer.train_stream
    produced = time.perf_counter()
    for _ in range(max(3, iterations // 3)):
        stream.next_batch()
    per_batch = (time.perf_counter() - produced) / max(3, iterations // 3)
    trainer.close()
    return {"configuration": configuration, "target": target, "trainer": trainer_name, "device": str(trainer.device),
            "patch_size": experiment.config["patch_size"], "batch_size": trainer.batch_size,
            "input_channels": experiment.num_input_channels, "workers": trainer.num_workers,
            "torch_threads": torch.get_num_threads(), "iterations": iterations,
            "iterations_per_s": iterations / elapsed, "step_time_s": elapsed / iterations,
            "data_wait_fraction": timer.fraction, "one_worker_batch_time_s": per_batch,
            "planned_step_time_s": experiment.config.get("estimates", {}).get("step_time_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dataset", default="501")
    parser.add_argument("-c", "--configurations", nargs="+", default=["2.5d", "3d_fullres"])
    parser.add_argument("-t", "--target", default="T1C")
    parser.add_argument("-tr", "--trainer", default="SynthTrainer")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="data workers (default: the trainer's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the training process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for configuration in args.configurations:
        result = measure(args.dataset, configuration, args.target, args.iterations, args.warmup, args.workers,
                         args.device, args.trainer)
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
