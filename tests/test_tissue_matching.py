"""Tissue matching without pairs (issue 19): the mixture fit against scikit-learn, a known non-monotone tissue
mapping recovered from unpaired synthetic cases (where histogram matching cannot), a monotone one kept, and the choice
benchmark. That no case gives both sides is tested with histogram matching's in test_unpaired_baseline.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthunet.architectures.baselines import QuantileMapping
from synthunet.training.tissue_matching import fit_mixture, fit_tissue_matching
from test_training_fixtures import prepare, single_thread, tiny_plans  # noqa: F401  (a fixture)

SHAPE = (40, 40, 40)
#: tissue intensities, layered as in a brain: 0 "white matter" (smooth blobs), 1 "grey matter" (a 2-voxel ribbon
#: around them), 2 "fluid" (the space between the ribbons). FLAIR-like: fluid darkest; T2-like: fluid brightest.
FLAIR_LIKE = {0: 0.50, 1: 0.65, 2: 0.20}
T2_LIKE = {0: 0.20, 1: 0.40, 2: 0.90}


def tissues(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tissue label map, brain mask) of one synthetic case."""
    rng = np.random.RandomState(seed)
    blobs = ndimage.gaussian_filter(rng.normal(size=SHAPE), 4.0)
    white = blobs < np.percentile(blobs, 45)
    ribbon = ndimage.binary_dilation(white, iterations=2) & ~white
    label = np.where(white, 0, np.where(ribbon, 1, 2))
    brain = np.zeros(SHAPE, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    return label, brain


def image(label: np.ndarray, brain: np.ndarray, intensities: dict[int, float], seed: int) -> np.ndarray:
    values = np.vectorize(intensities.get)(label).astype(np.float64)
    values = ndimage.gaussian_filter(values, 0.5) + np.random.RandomState(seed + 1000).normal(0, 0.02, label.shape)
    return np.where(brain, values, 0.0)


def apply(model: QuantileMapping, volume: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(volume[None, None].astype(np.float32)))[0, 0].numpy()


def unpaired(source: dict, target: dict, num_cases: int = 6):
    """Sources from cases 0..n-1, targets from other anatomies (cases 100..)."""
    sources = [(image(*tissues(seed), source, seed), tissues(seed)[1]) for seed in range(num_cases)]
    targets = [(image(*tissues(seed), target, seed), tissues(seed)[1]) for seed in range(100, 100 + num_cases)]
    return sources, targets


def test_mixture_fit_agrees_with_scikit_learn():
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.5, 0.08, 12000), rng.normal(0.9, 0.1, 5000)])
    ours = fit_mixture(values)
    reference = sklearn_mixture.GaussianMixture(3, random_state=0, n_init=3).fit(values[:, None])
    order = np.argsort(reference.means_.ravel())
    np.testing.assert_allclose(ours.means, reference.means_.ravel()[order], atol=0.01)
    np.testing.assert_allclose(ours.weights, reference.weights_[order], atol=0.01)
    np.testing.assert_allclose(ours.sds, np.sqrt(reference.covariances_.ravel()[order]), atol=0.01)


def test_recovers_a_non_monotone_tissue_mapping_that_histogram_matching_cannot():
    sources, targets = unpaired(FLAIR_LIKE, T2_LIKE)
    model, chosen, scores = fit_tissue_matching(sources, targets, spacing=(1.0, 1.0, 1.0), in_channels=1)
    assert chosen != "histogram matching" and scores[chosen] < scores["histogram matching"], scores
    label, brain = tissues(999)
    new = image(label, brain, FLAIR_LIKE, 999)
    truth = image(label, brain, T2_LIKE, 999)
    predicted = apply(model, new)
    # per tissue, the predicted median lies nearest to that tissue's true intensity
    for tissue, value in T2_LIKE.items():
        median = np.median(predicted[brain & (label == tissue)])
        assert min(T2_LIKE.values(), key=lambda v: abs(v - median)) == value, (tissue, median)
    assert np.corrcoef(predicted[brain], truth[brain])[0, 1] > 0.8


def test_keeps_a_monotone_mapping_where_the_tissue_order_is_the_same():
    brighter = {0: 0.30, 1: 0.55, 2: 0.10}                                    # FLAIR_LIKE's order, other values
    sources, targets = unpaired(FLAIR_LIKE, brighter)
    model, chosen, _ = fit_tissue_matching(sources, targets, spacing=(1.0, 1.0, 1.0), in_channels=1)
    assert chosen in ("histogram matching", "classes 0,1,2 -> 0,1,2"), chosen
    label, brain = tissues(999)
    predicted = apply(model, image(label, brain, FLAIR_LIKE, 999))
    for tissue, value in brighter.items():
        median = np.median(predicted[brain & (label == tissue)])
        assert min(brighter.values(), key=lambda v: abs(v - median)) == value, (tissue, median)


def test_the_map_is_constant_beyond_the_intensities_seen():
    sources, targets = unpaired(FLAIR_LIKE, T2_LIKE, num_cases=2)
    model, _, _ = fit_tissue_matching(sources, targets, spacing=(1.0, 1.0, 1.0), in_channels=1)
    seen = np.concatenate([s[b] for s, b in sources])
    outside = apply(model, np.array([[[seen.min() - 5.0, seen.min(), seen.max(), seen.max() + 5.0]]])).ravel()
    np.testing.assert_allclose(outside[0], outside[1], atol=1e-5)
    np.testing.assert_allclose(outside[3], outside[2], atol=1e-5)


@pytest.mark.usefixtures("single_thread")
def test_choice_benchmark_scores_every_candidate_once(tmp_path, monkeypatch):
    import importlib.util
    import json
    import sys
    from pathlib import Path

    prepare(tmp_path, monkeypatch, n_cases=8, plans=tiny_plans())
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tissue_matching_choice.py"
    spec = importlib.util.spec_from_file_location("benchmark_tissue_matching_choice", path)
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchmark)
    spec.loader.exec_module(benchmark)
    output = tmp_path / "choice.md"
    assert benchmark.main(["-d", "990", "--pairs", "T2F:T2W", "-o", str(output)]) == 0
    rows = json.loads(output.with_suffix(".json").read_text())["rows"]
    assert len(rows) == 7 and sum(r["chosen"] for r in rows) == 1
    assert sorted(r["ssim_rank"] for r in rows) == list(range(1, 8))
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["edge_difference"] == min(r["edge_difference"] for r in rows)
    assert output.read_text().count("**yes**") == 1
    assert benchmark.main(["-d", "990", "--pairs", "T2F-T2W", "-o", str(output)]) == 2
