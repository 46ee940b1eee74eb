"""Where the error of a synthesis is: scale or structure, and in which tissue.

Reads the predictions that ``benchmarks/quality.py`` left in its ``--work_dir`` and scores each case three ways:

* **as scored**: brain PSNR / SSIM exactly as ``synth_evaluate`` (region mode, percentile normalisation) gives them;
* **gain-fitted**: after the metric's own normalisation of both volumes, the prediction is multiplied by the one
  gain ``g`` that minimises the squared error in the brain (least squares, ``g = <r, p> / <p, p>``). The metric's
  normalisation divides each volume by its own 99.5th brain percentile, so a prediction whose brightest 0.5 %
  (enhancing tumour, or the noise tail of a tumour-free reference) is a little off is rescaled as a whole; the
  gain-fitted PSNR removes that one number and leaves the structure. ``g`` itself is reported (1 = right scale);
* **against the oracle** (datasets with ``oracleTr/``, the example dataset's noise-free, bias-free signals): the
  gain-fitted PSNR of the prediction against the true signal instead of the noisy, bias-modulated reference.

It also splits the gain-fitted squared error of the brain by tissue (healthy, and each tumour label).

    python benchmarks/error_decomposition.py --work_dir WORK -d 501 --target T1C --folds 0 1 -o table.md

Nothing here trains or predicts; it reads images only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from synthunet.dataset.image_io import read_image
from synthunet.evaluation.metrics import DEFAULT_LABEL_NAMES, evaluate_case, psnr_db, region_normalise

ORACLE = "oracle"


def fitted_gain(reference: np.ndarray, prediction: np.ndarray) -> float:
    """The least-squares gain ``g`` minimising ``sum((reference - g * prediction)^2)`` (NaN for a zero prediction)."""
    denominator = float(np.dot(prediction, prediction))
    return float(np.dot(reference, prediction)) / denominator if denominator > 0 else float("nan")


def decompose_case(reference: np.ndarray, prediction: np.ndarray, brain: np.ndarray, labels: np.ndarray | None,
                   oracle: np.ndarray | None = None) -> dict:
    """Scores of one case: as scored, gain-fitted, the gain, squared error per tissue, and against ``oracle``.

    Both volumes are normalised as the metric does (own [0.5, 99.5] brain percentiles, not clipped); PSNR uses the
    metric's brain data range (the normalised reference's max - min in the brain).
    """
    brain = np.asarray(brain) != 0
    scored = evaluate_case(reference, prediction, brain, labels)["brain"]
    normalised_reference = region_normalise(reference, brain)[brain]
    normalised_prediction = region_normalise(prediction, brain)[brain]
    gain = fitted_gain(normalised_reference, normalised_prediction)
    squared_error = (normalised_reference - gain * normalised_prediction) ** 2
    data_range = float(normalised_reference.max() - normalised_reference.min())
    result = {"psnr": scored["PSNR"], "ssim": scored["SSIM"], "gain": gain,
              "gain_fitted_psnr": psnr_db(float(squared_error.mean()), data_range),
              "squared_error": {}}
    tissue = np.zeros(int(brain.sum()), dtype=np.int64) if labels is None else np.rint(labels[brain]).astype(np.int64)
    names = {0: "healthy", **DEFAULT_LABEL_NAMES}
    for value in sorted(set(np.unique(tissue).tolist())):
        result["squared_error"][names.get(value, f"label {value}")] = float(squared_error[tissue == value].sum())
    if oracle is not None:
        normalised_oracle = region_normalise(oracle, brain)[brain]
        oracle_gain = fitted_gain(normalised_oracle, normalised_prediction)
        oracle_error = float(((normalised_oracle - oracle_gain * normalised_prediction) ** 2).mean())
        result["oracle_psnr"] = psnr_db(oracle_error, float(normalised_oracle.max() - normalised_oracle.min()))
    return result


def summarise(cases: list[dict]) -> dict:
    """Means over cases (gain: mean and standard deviation), squared error shares per tissue (summed over cases)."""
    def mean(key: str) -> float:
        values = [c[key] for c in cases if key in c and math.isfinite(c[key])]
        return float(np.mean(values)) if values else float("nan")

    totals: dict[str, float] = {}
    for case in cases:
        for name, value in case["squared_error"].items():
            totals[name] = totals.get(name, 0.0) + value
    total = sum(totals.values())
    return {"n_cases": len(cases), "psnr": mean("psnr"), "ssim": mean("ssim"), "gain": mean("gain"),
            "gain_std": float(np.std([c["gain"] for c in cases])) if cases else float("nan"),
            "gain_fitted_psnr": mean("gain_fitted_psnr"), "oracle_psnr": mean("oracle_psnr"),
            "error_share": {name: value / total for name, value in totals.items()} if total > 0 else {},
            "squared_error_total": total}


def _case_of(path: Path) -> str:
    """``Phantom_002-t1c.nii.gz`` (BraSyn) or ``Phantom_002_0001.nii.gz`` (raw) -> ``Phantom_002``."""
    name = path.name.split(".")[0]
    if "-" in name:
        return name.rsplit("-", 1)[0]
    return name.rsplit("_", 1)[0] if name[-4:].isdigit() else name


def method_folders(work_dir: Path, target: str, fold: int) -> dict[str, Path]:
    """``{row tag: prediction folder}`` of one target and fold in a quality.py work folder."""
    root = work_dir / "predictions"
    folders = {}
    for tag in sorted(os.listdir(root)) if root.is_dir() else []:
        folder = root / tag / target / f"fold_{fold}"
        if folder.is_dir():
            folders[tag] = folder
    return folders


def analyse(work_dir: Path, raw: Path, target: str, folds: list[int]) -> dict[str, dict]:
    """Per row tag (method/configuration, and ``oracle``): :func:`summarise` over every case of ``folds``."""
    dataset = json.loads((raw / "dataset.json").read_text())
    channels = [dataset["channel_names"][k] for k in sorted(dataset["channel_names"], key=int)]
    if target not in channels:
        raise SystemExit(f"{target} is not a channel of {raw / 'dataset.json'} ({', '.join(channels)})")
    index, ending = channels.index(target), dataset["file_ending"]
    per_method: dict[str, list[dict]] = {}
    for fold in folds:
        folders = method_folders(work_dir, target, fold)
        if not folders:
            raise SystemExit(f"no predictions for {target} fold {fold} under {work_dir / 'predictions'}")
        for tag, folder in folders.items():
            for path in sorted(folder.glob(f"*{ending}")):
                case = _case_of(path)
                reference = read_image(raw / "imagesTr" / f"{case}_{index:04d}{ending}", dtype=np.float64)[0]
                brain = read_image(raw / "masksTr" / f"{case}{ending}", dtype=None)[0] != 0
                labels = read_image(raw / "labelsTr" / f"{case}{ending}", dtype=None)[0]
                oracle_path = raw / "oracleTr" / f"{case}_{index:04d}{ending}"
                oracle = read_image(oracle_path, dtype=np.float64)[0] if oracle_path.is_file() else None
                prediction = read_image(path, dtype=np.float64)[0]
                per_method.setdefault(tag, []).append(decompose_case(reference, prediction, brain, labels, oracle))
    return {tag: summarise(cases) for tag, cases in per_method.items()}


def table(summaries: dict[str, dict]) -> str:
    """One markdown row per method."""
    tissues = sorted({t for s in summaries.values() for t in s["error_share"]},
                     key=lambda t: (t != "healthy", t))
    header = ["method", "n", "brain PSNR / SSIM (as scored)", "gain g (mean ± sd)", "gain-fitted PSNR",
              "gain-fitted PSNR vs oracle", *[f"error share {t}" for t in tissues]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tag, s in summaries.items():
        cells = [tag, str(s["n_cases"]), f"{s['psnr']:.2f} / {s['ssim']:.4f}", f"{s['gain']:.3f} ± {s['gain_std']:.3f}",
                 f"{s['gain_fitted_psnr']:.2f}",
                 "—" if math.isnan(s["oracle_psnr"]) else f"{s['oracle_psnr']:.2f}",
                 *[f"{100 * s['error_share'].get(t, 0.0):.1f} %" for t in tissues]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", required=True, type=Path, help="a benchmarks/quality.py --work_dir")
    parser.add_argument("-d", "--dataset", help="dataset id or name in $synthUNet_raw (or give --raw)")
    parser.add_argument("--raw", type=Path, help="the raw dataset folder (default: from -d and $synthUNet_raw)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--folds", type=int, nargs="+", default=[0])
    parser.add_argument("-o", "--output", type=Path, help="markdown table (a .json beside it)")
    args = parser.parse_args(argv)
    raw = args.raw
    if raw is None:
        if not args.dataset:
            parser.error("give -d or --raw")
        from synthunet.dataset.identifiers import raw_dataset_folder
        raw = raw_dataset_folder(args.dataset)
    summaries = analyse(args.work_dir, raw, args.target, args.folds)
    report(table(summaries), summaries, args.output)
    return 0


def report(text: str, results: dict, output: Path | None) -> None:
    """Print a markdown table; with ``output``, also write it there and ``results`` as JSON beside it."""
    print(text)
    if output:
        output.write_text(text + "\n")
        output.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
