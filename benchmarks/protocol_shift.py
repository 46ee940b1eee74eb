"""A model trained on one protocol, tested on scans of another (issue 16): how much is lost, and to what.

    python benchmarks/protocol_shift.py --model RESULTS/.../SynthTrainer__synthUNetPlans__3d_fullres__T1C \
        --baseline RESULTS/.../Baseline_VoxelRegression__synthUNetPlans__3d_fullres__T1C --fold 0 \
        --protocols default 1.5T_se 3T_mprage 3T_gre_thick --work /tmp/shift -o shift.md

For each protocol family it generates ``--num_train + --num_test`` example cases with ``--seed`` (a seed the model
never saw; the same anatomy under every protocol) and predicts the model's target of the test cases from the
other sequences, BraSyn-style. Rows:

* ``model``: the trained model (all of it);
* ``prior alone``: the model's closed-form prior without the network's correction (models with a prior);
* ``regression, training protocol``: the Baseline_VoxelRegression model fitted on the training protocol;
* ``regression, in-domain``: the same regression fitted on this protocol's own ``--num_train`` cases (what a
  closed form with access to the new scanner gets; it never sees a test case);
* ``oracle``: the test cases' noise-free, bias-free signal.

Scores: brain PSNR / SSIM as ``synth_evaluate`` gives them and the gain-fitted PSNR (``error_decomposition.py``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from error_decomposition import decompose_case, report, summarise  # noqa: E402

from synthunet.architectures.baselines import VoxelRegression, regression_sigmas_voxels  # noqa: E402
from synthunet.training.baseline_fitting import fit_voxel_regression  # noqa: E402
from synthunet.dataset.image_io import read_image  # noqa: E402
from synthunet.prediction.model_folder import ModelFolder, load_network  # noqa: E402
from synthunet.inference.case_preprocessing import PlansPreprocessing  # noqa: E402
from synthunet.inference.predictor import SynthPredictor  # noqa: E402
from synthunet.architectures.model_network import PriorResidual  # noqa: E402

FIRST_ID = 880


def make_dataset(work: Path, protocol: str, index: int, num_cases: int, seed: int) -> Path:
    """``work/raw/Dataset{FIRST_ID + index}_BraTSPhantom`` made with ``protocol`` (kept when it exists)."""
    folder = work / "raw" / f"Dataset{FIRST_ID + index:03d}_BraTSPhantom"
    if not folder.is_dir():
        subprocess.run(["synth_make_example_dataset", "-d", str(FIRST_ID + index), "--num_cases", str(num_cases),
                        "--seed", str(seed), "--protocol", protocol, "--no_progress"], check=True,
                       env={**os.environ, "synthUNet_raw": str(work / "raw")}, capture_output=True)
    return folder


def read_case(raw: Path, case: str, channels: list[str]) -> tuple[dict[str, np.ndarray], object]:
    images, geometry = {}, None
    for index, name in enumerate(channels):
        images[name], geometry = read_image(raw / "imagesTr" / f"{case}_{index:04d}.nii.gz")
    return images, geometry


def prior_loader(model, fold, checkpoint, device):
    """The model's prior alone (a PriorResidual's closed-form part)."""
    network = load_network(model, fold, checkpoint, device)
    residual = next((m for m in network.modules() if isinstance(m, PriorResidual)), None)
    if residual is None:
        raise SystemExit(f"{model.path} has no prior")
    return residual.prior


def fit_in_domain(model: ModelFolder, raw: Path, cases: list[str], channels: list[str]) -> VoxelRegression:
    """The baseline regression fitted on ``cases`` of ``raw``, preprocessed with ``model``'s plans."""
    all_channels = PlansPreprocessing(model.plans, model.configuration, channels, channels, model.target)
    fitted = []
    for case in cases:
        images, geometry = read_case(raw, case, channels)
        data, _ = all_channels.preprocess(images, geometry)
        inputs = data[[channels.index(c) for c in model.inputs]]
        target = data[channels.index(model.target)]
        brain = (inputs != 0).any(axis=0)
        fitted.append((inputs, target, brain))
    regression = VoxelRegression(3, len(model.inputs),
                                 sigmas_voxels=regression_sigmas_voxels(model.config.spacing), degree=2)
    return fit_voxel_regression(regression, fitted)


def split_cases(cases: list[str], num_train: int) -> tuple[list[str], list[str]]:
    """The first ``num_train`` cases fit the in-domain regression; the others are the test cases (disjoint)."""
    if not 0 < num_train < len(cases):
        raise SystemExit(f"--num_train must leave test cases: {num_train} of {len(cases)} cases")
    train, test = cases[:num_train], cases[num_train:]
    assert not set(train) & set(test)
    return train, test


def score(raw: Path, case: str, target_index: int, prediction: np.ndarray) -> dict:
    reference = read_image(raw / "imagesTr" / f"{case}_{target_index:04d}.nii.gz", dtype=np.float64)[0]
    brain = read_image(raw / "masksTr" / f"{case}.nii.gz", dtype=None)[0] != 0
    labels = read_image(raw / "labelsTr" / f"{case}.nii.gz", dtype=None)[0]
    return decompose_case(reference, np.asarray(prediction, dtype=np.float64), brain, labels)


def run_protocol(model_path: Path, baseline_path: Path, fold: int, raw: Path, num_train: int) -> dict[str, dict]:
    model = ModelFolder.load(model_path)
    channels = model.dataset.channels
    target_index = channels.index(model.target)
    train, test = split_cases(sorted({p.name.rsplit("_", 1)[0] for p in (raw / "imagesTr").glob("*_0000.nii.gz")}),
                              num_train)
    regression = fit_in_domain(model, raw, train, channels)
    predictors = {"model": SynthPredictor(model_path, folds=[fold], device="cpu", use_mirroring=False),
                  "regression, training protocol": SynthPredictor(baseline_path, folds=[fold], device="cpu",
                                                                  use_mirroring=False),
                  "regression, in-domain": SynthPredictor(model_path, folds=[fold], device="cpu", use_mirroring=False,
                                                          network_loader=lambda *a: regression)}
    if model.config.architecture.prior:
        predictors["prior alone"] = SynthPredictor(model_path, folds=[fold], device="cpu", use_mirroring=False,
                                                   network_loader=prior_loader)
    rows: dict[str, list[dict]] = {}
    for case in test:
        images, geometry = read_case(raw, case, channels)
        inputs = {name: image for name, image in images.items() if name != model.target}
        for name, predictor in predictors.items():
            with torch.inference_mode():
                prediction = predictor.predict_from_arrays(inputs, geometry, model.target)
            rows.setdefault(name, []).append(score(raw, case, target_index, prediction))
        oracle = read_image(raw / "oracleTr" / f"{case}_{target_index:04d}.nii.gz", dtype=np.float64)[0]
        rows.setdefault("oracle", []).append(score(raw, case, target_index, oracle))
    return {name: summarise(values) for name, values in rows.items()}


def table(results: dict[str, dict[str, dict]], target: str) -> str:
    lines = [f"| protocol | method ({target}) | brain PSNR / SSIM | gain-fitted PSNR |", "|---|---|---|---|"]
    order = ["model", "prior alone", "regression, training protocol", "regression, in-domain", "oracle"]
    for protocol, rows in results.items():
        for name in [n for n in order if n in rows]:
            r = rows[name]
            lines.append(f"| {protocol} | {name} | {r['psnr']:.2f} / {r['ssim']:.4f} | {r['gain_fitted_psnr']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="trained model folder (on the default protocol)")
    parser.add_argument("--baseline", type=Path, required=True, help="its Baseline_VoxelRegression model folder")
    parser.add_argument("--fold", default="0")
    parser.add_argument("--protocols", nargs="+", default=["default", "1.5T_se", "3T_mprage", "3T_gre_thick"])
    parser.add_argument("--num_train", type=int, default=32,
                        help="cases the in-domain regression is fitted on (default 32, as many as a training fold; "
                             "with 16 a quadratic regression extrapolates in the tumour)")
    parser.add_argument("--num_test", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1, help="seed of the test datasets (not the model's)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    fold = int(args.fold) if args.fold.isdigit() else args.fold
    results = {}
    for index, protocol in enumerate(args.protocols):
        raw = make_dataset(args.work, protocol, index, args.num_train + args.num_test, args.seed)
        results[protocol] = run_protocol(args.model, args.baseline, fold, raw, args.num_train)
        print(f"{protocol}: " + "; ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.4f}" for k, v in results[protocol].items()),
              flush=True)
    report(table(results, ModelFolder.load(args.model).target), results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
