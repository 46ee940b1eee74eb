"""The ``training`` block: optimiser, schedule and sampling hyper-parameters of a configuration."""
from __future__ import annotations

import math

from synthunet.errors import InputError
from synthunet.plans import TrainingPlan

#: nnU-Net's GPU schedule
GPU_EPOCHS, GPU_ITERATIONS, GPU_VAL_ITERATIONS = 1000, 250, 50
#: nnU-Net's start and foreground oversampling (every plan but the CPU short-step ones)
DEFAULT_INITIAL_LR, DEFAULT_OVERSAMPLE_TUMOUR = TrainingPlan.initial_lr, TrainingPlan.oversample_tumour
#: a CPU plan cut for MIN_CPU_STEPS steps (3D U-Net): a 3x higher start, and twice as many patches centred on
#: tumour, whose contrast (enhancement) is the rare signal the network has to learn beyond the regression prior.
#: With 1e-3 / 0.33 the same 2,000-step plan only tied the regression (documentation/benchmarks.md)
CPU_INITIAL_LR, CPU_OVERSAMPLE_TUMOUR = 3e-3, 0.66
#: ...except the CPU 3D RRDB, which has no normalisation: at 3e-3 each of four runs blew up early (train loss up to
#: 2e4), fell back to the prior and then learned slowly for thousands of steps (seventeenth session); at 2e-3, even
#: after a 5-epoch warm-up, it blew up again; at 1e-3 it learned little until the poly schedule had brought the lr
#: below ~5e-4, and 5e-4 learned fastest of 2.5e-4 / 5e-4 / 1e-3 (documentation/benchmarks.md, nineteenth session)
CPU_RRDB_INITIAL_LR = 5e-4
#: CPU epochs are short so that checkpoints and progress come often
CPU_ITERATIONS, CPU_VAL_ITERATIONS = 50, 10
#: validation iterations run forward only: about 1/3 of a training step
VALIDATION_COST = 1 / 3
#: data loading runs in its own worker (measured data wait 0.3 %); logging, checkpoints and Python overhead
CPU_OVERHEAD_FACTOR = 1.1
MAX_CPU_EPOCHS = 1000
#: CPU 3D U-Net plans get at least this many optimiser steps: the patch is cut until they fit the training
#: minutes (configuration.short_step_network). On the example dataset, 2,000 steps on 32^3 patches beat 500 on
#: 64x64x48 patches of the same network by 1.3 dB brain PSNR in less time (documentation/benchmarks.md,
#: "Steps before context on CPU")
MIN_CPU_STEPS = 2000


def cpu_schedule(step_time_s: float, training_minutes: float) -> tuple[int, int, int]:
    """(epochs, iterations per epoch, validation iterations) that fill ``training_minutes`` of CPU time."""
    budget_s = 60.0 * training_minutes
    step = max(step_time_s, 1e-3) * CPU_OVERHEAD_FACTOR
    iterations, val_iterations = CPU_ITERATIONS, CPU_VAL_ITERATIONS
    epoch_s = step * (iterations + VALIDATION_COST * val_iterations)
    if epoch_s > budget_s:  # fewer iterations than one standard epoch fit: one short epoch
        iterations = max(1, int(budget_s / (step * (1 + VALIDATION_COST * val_iterations / iterations))))
        val_iterations = max(1, math.ceil(iterations * CPU_VAL_ITERATIONS / CPU_ITERATIONS))
        return 1, iterations, val_iterations
    return min(MAX_CPU_EPOCHS, max(1, int(budget_s // epoch_s))), iterations, val_iterations


def step_time_for_min_steps(training_minutes: float) -> float:
    """The longest training step that still leaves MIN_CPU_STEPS steps (plus validation and overhead) in
    ``training_minutes``."""
    if training_minutes <= 0:
        raise InputError(f"The CPU training minutes must be positive, got {training_minutes}")
    per_step = CPU_OVERHEAD_FACTOR * (1 + VALIDATION_COST * CPU_VAL_ITERATIONS / CPU_ITERATIONS)
    return 60.0 * training_minutes / (MIN_CPU_STEPS * per_step)


def training_block(device: str, step_time_s: float | None = None, cpu_training_minutes: float = 10.0,
                   short_steps: bool = False, short_step_lr: float = CPU_INITIAL_LR) -> dict:
    """Hyper-parameters the trainer reads; on CPU the schedule comes from the time model. ``short_steps``: a CPU
    plan cut for MIN_CPU_STEPS steps (3D U-Net and RRDB), which starts at ``short_step_lr`` with
    CPU_OVERSAMPLE_TUMOUR."""
    learning_rate, oversample = DEFAULT_INITIAL_LR, DEFAULT_OVERSAMPLE_TUMOUR
    if device == "cpu":
        if step_time_s is None:
            raise ValueError("A CPU training schedule needs the estimated step time")
        epochs, iterations, val_iterations = cpu_schedule(step_time_s, cpu_training_minutes)
        if short_steps:
            learning_rate, oversample = short_step_lr, CPU_OVERSAMPLE_TUMOUR
    else:
        epochs, iterations, val_iterations = GPU_EPOCHS, GPU_ITERATIONS, GPU_VAL_ITERATIONS
    return TrainingPlan(initial_lr=learning_rate, num_epochs=epochs, iterations_per_epoch=iterations,
                        val_iterations_per_epoch=val_iterations, oversample_tumour=oversample).to_dict()
