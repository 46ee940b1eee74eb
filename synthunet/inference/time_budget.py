"""Prediction settings from a time budget per case: how many folds, mirroring or not, 2.5D orientations.

On a CPU, the full-accuracy path (every fold, every mirroring, 9 orientations for 2.5D) can take a long time per
case. :func:`choose_setting` estimates the seconds per case of each candidate setting from the number of
windows the case needs and the measured seconds per window of the model's network on this machine, and
returns the most accurate candidate that fits. Preference (most accurate first; measured on the example
dataset, documentation/predict.md): more folds, then more orientations, then mirroring, then the sliding-window
step 0.5 before 0.75.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from synthunet.prediction.orientation_fusion import orientations_for
from synthunet.prediction.rotation import PlaneRotation
from synthunet.prediction.sliding_window import count_windows, inference_tile_size, use_channels_last

#: the default budget of synth_predict on a CPU (seconds per case)
DEFAULT_CPU_BUDGET_S = 300.0


@dataclass(frozen=True)
class Setting:
    """One way to predict a case."""

    folds: tuple
    use_mirroring: bool
    orientations: int = 1
    step_size: float = 0.5

    def passes_per_window(self, is_25d: bool) -> int:
        """Network passes per window and fold: the mirrorings (4 in-plane flips in 2.5D, 8 in 3D) or 1."""
        return (4 if is_25d else 8) if self.use_mirroring else 1

    def describe(self, is_25d: bool) -> str:
        folds = ", ".join(map(str, self.folds))
        text = (f"fold(s) {folds}, mirroring {'on' if self.use_mirroring else 'off'} "
                f"({self.passes_per_window(is_25d)} pass(es) per window)")
        return text + (f", {self.orientations} orientation(s)" if is_25d else "") + f", step {self.step_size:g}"


def candidates(folds: Sequence, mirroring: Sequence[bool], orientations: Sequence[int],
               steps: Sequence[float] = (0.5,)) -> list[Setting]:
    """Every setting with a prefix of ``folds`` (all, then fewer), most accurate first."""
    result = []
    for n in range(len(folds), 0, -1):
        for count in sorted(set(orientations), reverse=True):
            for mirror in sorted(set(mirroring), reverse=True):
                for step in sorted(set(steps)):
                    result.append(Setting(tuple(folds[:n]), mirror, count, step))
    return result


def windows_per_pass(shape: Sequence[int], patch_size: Sequence[int], step_size: float, is_25d: bool,
                     orientations: int = 1, axial_axis: int = 0, tile_divisor: Sequence[int] | None = None) -> int:
    """Windows one network pass over a preprocessed case of ``shape`` runs (empty windows counted too).

    2.5D: slices x in-plane windows for each orientation; a diagonal orientation is counted on its padded,
    rotated grid (an upper bound: the real run crops it to the rotated brain).
    """
    shape = [int(s) for s in shape]
    if not is_25d:
        window = inference_tile_size(shape, patch_size, tile_divisor) if tile_divisor else list(patch_size)
        return count_windows(shape, window, step_size)
    total = 0
    for orientation in orientations_for(orientations, axial_axis):
        plane_of_rotation = orientation.rotation_plane
        grid = shape if plane_of_rotation is None else list(PlaneRotation(tuple(shape), plane_of_rotation).padded_shape)
        axis = orientation.slicing_axis
        plane = [grid[a] for a in range(3) if a != axis]
        window = inference_tile_size(plane, patch_size, tile_divisor) if tile_divisor else list(patch_size)
        total += grid[axis] * count_windows(plane, window, step_size)
    return total


@torch.inference_mode()
def seconds_per_window(network: nn.Module, window_input_shape: Sequence[int], batch_size: int,
                       device: torch.device | str = "cpu") -> float:
    """Measured seconds per window of ``network`` on ``(batch_size, *window_input_shape)`` zeros (after a warm-up),
    in the memory layout the sliding window hands it (:func:`use_channels_last`)."""
    x = torch.zeros((batch_size, *window_input_shape), device=device)
    if use_channels_last(network, device, len(window_input_shape) - 1):
        x = x.contiguous(memory_format=torch.channels_last_3d)
    network(x)
    started = time.perf_counter()
    network(x)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / batch_size


def estimate_seconds(setting: Setting, windows: dict[tuple[int, float], int], window_seconds: float,
                     is_25d: bool) -> float:
    """Network seconds per case of ``setting``: windows x passes x folds x seconds per window.

    ``windows``: windows per pass by ``(orientations, step_size)``."""
    passes = setting.passes_per_window(is_25d) * len(setting.folds)
    return windows[setting.orientations, setting.step_size] * passes * window_seconds


def choose_setting(options: list[Setting], windows: dict[tuple[int, float], int], window_seconds: float, is_25d: bool,
                   budget_s: float) -> tuple[Setting, float, bool]:
    """The first of ``options`` (most accurate first) whose estimate fits ``budget_s``; else the cheapest.

    Returns the setting, its estimated seconds per case, and whether it fits.
    """
    estimates = [estimate_seconds(o, windows, window_seconds, is_25d) for o in options]
    for option, estimate in zip(options, estimates):
        if estimate <= budget_s:
            return option, estimate, True
    cheapest = int(np.argmin(estimates))
    return options[cheapest], estimates[cheapest], False
