"""Would cleaner inputs help? The voxel regression fitted on the acquired inputs and on their noise-free signals.

Needs a dataset with ``oracleTr/`` (``synth_make_example_dataset``). For one target and fold of the
preprocessed dataset's ``splits_final.json`` it fits :class:`VoxelRegression` on the training cases (inputs
divided by their brain median, target likewise) and scores the held-out cases with
``error_decomposition.decompose_case``. Rows:

* ``regression, acquired inputs``: what the baseline sees (noise, bias fields);
* ``regression, oracle inputs``: the same fit on the inputs' noise-free, bias-free signals, an upper bound
  for any input denoising or bias correction in front of the regression;
* ``copy of <input> (oracle)`` (``--copy NAME``): that input's noise-free signal as the prediction, as is;
* ``oracle``: the target's own noise-free signal.

    python benchmarks/input_limit.py --raw RAW --splits PRE/splits_final.json --target T1C --fold 0

Reads images only; works on each case's own grid (the 2 mm example data).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from error_decomposition import decompose_case, summarise, table  # noqa: E402

from synthunet.architectures.baselines import VoxelRegression, regression_sigmas_voxels  # noqa: E402
from synthunet.training.baseline_fitting import fit_voxel_regression  # noqa: E402
from synthunet.dataset.dataset_json import load_dataset_json  # noqa: E402
from synthunet.dataset.image_io import read_image  # noqa: E402


def _median_scaled(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    return np.where(brain, volume / np.median(volume[brain]), 0.0).astype(np.float32)


def load_case(raw: Path, case: str, channels: list[int], target: int, ending: str, folder: str):
    """Inputs (from ``folder``), target, its oracle, brain mask and labels of one case."""
    def image(name: str, index: int):
        return read_image(raw / name / f"{case}_{index:04d}{ending}", dtype=np.float64)

    brain = read_image(raw / "masksTr" / f"{case}{ending}", dtype=None)[0] != 0
    labels = read_image(raw / "labelsTr" / f"{case}{ending}", dtype=None)[0]
    inputs = np.stack([_median_scaled(image(folder, i)[0], brain) for i in channels])
    return inputs, image("imagesTr", target)[0], image("oracleTr", target)[0], brain, labels


def run(raw: Path, split: dict, target_name: str, copy: str | None = None) -> dict[str, dict]:
    """Per row: :func:`summarise` over the held-out cases of ``split``."""
    dataset = load_dataset_json(raw / "dataset.json")
    names = dataset.channels
    target, ending = names.index(target_name), dataset.file_ending
    channels = [i for i in range(len(names)) if i != target]
    rows: dict[str, list[dict]] = {}
    for folder, label in (("imagesTr", "acquired inputs"), ("oracleTr", "oracle inputs")):
        train = [load_case(raw, c, channels, target, ending, folder) for c in split["train"]]
        model = VoxelRegression(3, len(channels), sigmas_voxels=regression_sigmas_voxels((2.0, 2.0, 2.0)))
        fit_voxel_regression(model, [(x, _median_scaled(r, b), b) for x, r, _, b, _ in train])
        for case in split["val"]:
            x, reference, oracle, brain, labels = load_case(raw, case, channels, target, ending, folder)
            with torch.no_grad():
                prediction = model(torch.from_numpy(x)[None])[0, 0].double().numpy()
            rows.setdefault(f"regression, {label}", []).append(
                decompose_case(reference, prediction, brain, labels, oracle))
            if folder == "oracleTr":
                if copy is not None:
                    rows.setdefault(f"copy of {copy} (oracle)", []).append(decompose_case(
                        reference, x[channels.index(names.index(copy))].astype(np.float64), brain, labels, oracle))
                rows.setdefault("oracle", []).append(decompose_case(reference, oracle, brain, labels, oracle))
    return {tag: summarise(cases) for tag, cases in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="raw dataset folder with oracleTr/")
    parser.add_argument("--splits", type=Path, required=True, help="splits_final.json of the preprocessed dataset")
    parser.add_argument("--target", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--copy", help="also score this input's noise-free signal as the prediction (e.g. T1N)")
    args = parser.parse_args(argv)
    if not (args.raw / "oracleTr").is_dir():
        parser.error(f"{args.raw} has no oracleTr/ (make it with synth_make_example_dataset)")
    split = json.loads(args.splits.read_text())[args.fold]
    print(table(run(args.raw, split, args.target, args.copy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
