"""Tissue matching without pairs: a possibly non-monotone intensity map from one sequence onto another.

Histogram matching is monotone, so it cannot turn dark CSF (FLAIR) into bright CSF (T2-weighted): from that start
AN-GAN stayed at histogram matching (documentation/unpaired.md). Tissue matching lets the tissue order change:

1. A 3-class 1-D Gaussian mixture of the brain intensities of each sequence (the source's from one half of the
   training cases, the target's from the other, as histogram matching's levels).
2. Seven candidate maps: histogram matching, and for each of the 6 ways to send the source classes to the target
   classes, ``x -> sum_k p_k(x) * target_mean[assignment[k]]`` (``p_k`` the source class posteriors) followed by
   histogram matching of its output onto the target, so that every candidate has the target's intensity
   distribution and only the order of the tissues differs.
3. The choice, without pairs: tissues are told apart by their edges, not by their brightness. For each candidate,
   the mean gradient magnitude of the mapped source images in each of 20 target intensity bins is compared with
   the same profile of the target images (mean absolute difference weighted by the target's voxels per bin). The
   candidate with the smallest difference wins. Measured on Dataset501 it chooses a non-monotone map in both
   directions between T2F and T2W and keeps a monotone one between T1N and T1C (documentation/unpaired.md).
4. The winner is tabulated on :data:`TISSUE_LEVELS` source intensities as a :class:`QuantileMapping` (piecewise
   linear, any shape), constant beyond the source intensities seen in the fit.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from synthunet.architectures.baselines import QuantileMapping
from synthunet.architectures.model_network import TISSUE_LEVELS
from synthunet.errors import InputError
from synthunet.training.baseline_fitting import mean_quantile_levels

Image = tuple[np.ndarray, np.ndarray]  # (image, brain mask)

NUM_CLASSES = 3
NUM_EDGE_BINS = 20
#: the intensity levels of the histogram-matching steps (as Baseline_HistogramMatching)
QUANTILE_LEVELS = 101


@dataclass(frozen=True)
class Mixture:
    """A 1-D Gaussian mixture, classes sorted by mean."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """``(*x.shape, classes)`` class posteriors of intensities ``x``."""
        z = (np.asarray(x, dtype=np.float64)[..., None] - self.means) / self.sds
        log_p = np.log(self.weights) - np.log(self.sds) - 0.5 * z * z
        log_p -= log_p.max(axis=-1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=-1, keepdims=True)


def fit_mixture(values: np.ndarray, num_classes: int = NUM_CLASSES, iterations: int = 100) -> Mixture:
    """EM fit of a 1-D Gaussian mixture, started at evenly spaced quantiles (deterministic)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 10 * num_classes or np.ptp(v) == 0:
        raise InputError(f"Tissue matching needs varied brain intensities to fit {num_classes} classes "
                         f"(got {v.size} voxels, range {np.ptp(v) if v.size else 0:g})")
    floor = 1e-3 * float(np.std(v))
    means = np.quantile(v, np.linspace(0.15, 0.85, num_classes))
    sds = np.full(num_classes, np.std(v) / num_classes)
    weights = np.full(num_classes, 1.0 / num_classes)
    for _ in range(iterations):
        p = Mixture(weights, means, sds).posteriors(v)
        mass = p.sum(axis=0) + 1e-12
        weights = mass / v.size
        means = (p * v[:, None]).sum(axis=0) / mass
        sds = np.sqrt((p * (v[:, None] - means) ** 2).sum(axis=0) / mass) + floor
    order = np.argsort(means)
    return Mixture(weights[order], means[order], sds[order])


def brain_values(images: Sequence[Image], max_voxels: int = 50_000, seed: int = 0) -> np.ndarray:
    """At most ``max_voxels`` brain intensities pooled from ``images`` (a seeded sample)."""
    values = np.concatenate([np.asarray(image, dtype=np.float64)[np.asarray(brain, dtype=bool)]
                             for image, brain in images])
    if values.size > max_voxels:
        values = np.random.default_rng(seed).choice(values, max_voxels, replace=False)
    return values


def edge_profile(images: Iterable[Image], bin_edges: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Per intensity bin: (voxel count, summed gradient magnitude in mm^-1) over the brains of ``images``; values
    outside the bins count in the outer ones. The image is 0 outside its brain mask, as the exported predictions."""
    counts, sums = np.zeros(len(bin_edges) - 1), np.zeros(len(bin_edges) - 1)
    for image, brain in images:
        brain = np.asarray(brain, dtype=bool)
        y = np.where(brain, image, 0.0)
        gradients = np.gradient(y, *[float(s) for s in spacing[-y.ndim:]])
        magnitude = np.sqrt(sum(g * g for g in gradients))[brain]
        index = np.clip(np.searchsorted(bin_edges, y[brain], side="right") - 1, 0, len(counts) - 1)
        counts += np.bincount(index, minlength=len(counts))
        sums += np.bincount(index, weights=magnitude, minlength=len(counts))
    return counts, sums


def edge_difference(candidate: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
                    min_voxels: int = 50) -> float:
    """Mean absolute difference of two edge profiles' mean gradient per bin, weighted by the reference's voxels;
    bins with fewer than ``min_voxels`` voxels on either side are left out."""
    (n_c, s_c), (n_r, s_r) = candidate, reference
    used = (n_c >= min_voxels) & (n_r >= min_voxels)
    if not used.any():
        return float("inf")
    difference = np.abs(s_c[used] / n_c[used] - s_r[used] / n_r[used])
    return float((n_r[used] * difference).sum() / n_r[used].sum())


@dataclass(frozen=True)
class Candidate:
    """One candidate map, tabulated: ``values`` at the source intensities ``grid``."""

    name: str
    grid: np.ndarray
    values: np.ndarray

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return np.interp(image, self.grid, self.values)


def tabulation_grid(images: Sequence[Image], num_levels: int = TISSUE_LEVELS) -> np.ndarray:
    """Source intensities to tabulate a map on: ``num_levels - 2`` from the smallest to the largest brain intensity of
    ``images``, and one far below and above each, so the map is constant beyond them."""
    low, high = np.inf, -np.inf
    for image, brain in images:
        values = np.asarray(image)[np.asarray(brain, dtype=bool)]
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    span = max(high - low, 1e-6)
    return np.concatenate([[low - 1e3 * span], np.linspace(low, high, num_levels - 2), [high + 1e3 * span]])


def flat_ends(values: np.ndarray) -> np.ndarray:
    """``values`` with the two outer entries equal to their neighbours (the map is constant there)."""
    values = np.array(values, dtype=np.float64)
    values[0], values[-1] = values[1], values[-2]
    return values


def candidates(sources: Sequence[Image], targets: Sequence[Image], num_levels: int = TISSUE_LEVELS) -> list[Candidate]:
    """Histogram matching and the 6 class assignments, each followed by histogram matching (module docstring),
    tabulated on ``num_levels`` source intensities."""
    source_values = brain_values(sources)
    grid = tabulation_grid(sources, num_levels)
    target_levels = mean_quantile_levels(targets, QUANTILE_LEVELS)
    source_levels = mean_quantile_levels(sources, QUANTILE_LEVELS)
    found = [Candidate("histogram matching", grid, flat_ends(np.interp(grid, source_levels, target_levels)))]
    source_mixture, target_mixture = fit_mixture(source_values), fit_mixture(brain_values(targets))
    posteriors = source_mixture.posteriors(grid)
    for assignment in itertools.permutations(range(NUM_CLASSES)):
        class_map = posteriors @ target_mixture.means[list(assignment)]
        mapped = [(np.interp(image, grid, class_map), brain) for image, brain in sources]
        levels = mean_quantile_levels(mapped, QUANTILE_LEVELS)
        name = "classes " + ",".join(map(str, range(NUM_CLASSES))) + " -> " + ",".join(map(str, assignment))
        found.append(Candidate(name, grid, flat_ends(np.interp(class_map, levels, target_levels))))
    return found


def choose_by_edges(found: Sequence[Candidate], sources: Sequence[Image], targets: Sequence[Image],
                    spacing: Sequence[float]) -> tuple[Candidate, dict[str, float]]:
    """The candidate whose mapped sources' edge profile is closest to the targets' (module docstring, step 3), and
    every candidate's difference."""
    target_values = brain_values(targets)
    low, high = np.percentile(target_values, [0.5, 99.5])
    bin_edges = np.linspace(low, high, NUM_EDGE_BINS + 1)
    reference = edge_profile(targets, bin_edges, spacing)
    scores = {c.name: edge_difference(edge_profile(((c(image), brain) for image, brain in sources), bin_edges,
                                                   spacing), reference) for c in found}
    best = min(found, key=lambda c: scores[c.name])
    return best, scores


def fit_tissue_matching(sources: Iterable[Image], targets: Iterable[Image], spacing: Sequence[float],
                        in_channels: int, channel: int = 0,
                        num_levels: int = TISSUE_LEVELS) -> tuple[QuantileMapping, str, dict[str, float]]:
    """Tissue matching from unpaired ``(image, brain mask)`` pairs (different cases on the two sides): the fitted
    map as a :class:`QuantileMapping` of ``num_levels`` levels, the chosen candidate's name and every candidate's
    edge difference."""
    sources, targets = list(sources), list(targets)
    if not sources or not targets:
        raise InputError("Tissue matching needs at least one source and one target image")
    found = candidates(sources, targets, num_levels)
    best, scores = choose_by_edges(found, sources, targets, spacing)
    model = QuantileMapping(3, in_channels, channel=channel, num_levels=num_levels)
    model.source_levels.copy_(torch.from_numpy(best.grid).float())
    model.target_levels.copy_(torch.from_numpy(best.values).float())
    return model, best.name, scores


__all__ = ["Candidate", "Mixture", "candidates", "choose_by_edges", "edge_difference",
           "edge_profile", "fit_mixture", "fit_tissue_matching"]
