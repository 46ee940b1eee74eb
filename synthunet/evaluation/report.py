"""Visual quality report: one PNG per case and a static HTML index, worst cases first.

Each PNG shows, on axial, coronal and sagittal slices through the tumour centre (centre of mass of
labels > 0; the brain's centre of mass without tumour), the input sequences, the ground truth, the
prediction, the absolute error and, when given, an uncertainty map. Ground truth, prediction and error are
drawn on the scale the metrics compare them (region mode; :mod:`synthunet.evaluation.report_panels`): with
the default normalisation ``"percentile"`` each volume rescaled by its own [0.5, 99.5] brain percentiles,
with ``"none"`` as given; ground truth and prediction then share one window, the (normalised) reference's
[0.5, 99.5] percentiles inside the brain. The figure and the page state the normalisation. The HTML page (no
server needed; it links the PNGs by relative paths) lists the cases sorted by brain SSIM, lowest first.

Command: ``synth_report -i PRED_FOLDER -ref GT_FOLDER [--inputs FOLDER] [-l LABELS] [--uncertainty FOLDER]
[--normalisation percentile|none] -o REPORT_FOLDER``.
"""
from __future__ import annotations

import argparse
import html
import io
import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from synthunet.cli_support import run_cli
from synthunet.dataset.dataset_json import SUPPORTED_FILE_ENDINGS
from synthunet.dataset.image_io import read_image, remove_stale_temporaries
from synthunet.errors import SynthUNetError
from synthunet.evaluation.evaluate import load_case_arrays
from synthunet.evaluation.layout import CaseFiles, channel_names_from, label_scheme_from, match_folders, read_folder
from synthunet.evaluation.metrics import (DEFAULT_NORMALISATION, NORMALISATIONS, EvaluationError,
                                          check_normalisation, default_brain_mask, evaluate_case)
from synthunet.evaluation.report_panels import intensity_window, normalisation_caption, target_panels
from synthunet.evaluation.results_io import read_csv_rows
from synthunet.utilities.atomic_io import write_bytes_atomic, write_text_atomic
from synthunet.utilities.parallel import run_parallel

VIEWS = ("axial", "coronal", "sagittal")
INDEX_FILE = "index.html"
_TABLE_METRICS = (("brain", "SSIM"), ("tumour", "SSIM"), ("healthy", "SSIM"), ("brain", "PSNR"),
                  ("tumour", "PSNR"), ("brain", "MAE"), ("tumour", "MAE"), ("brain", "NCC"))


def slice_centre(brain: np.ndarray, labels: np.ndarray | None = None) -> tuple[int, ...]:
    """Voxel through which the slices pass: centre of mass of labels > 0, else of the brain, else the middle."""
    for mask in ((labels > 0) if labels is not None else None, brain):
        if mask is not None and mask.any():
            centre = np.argwhere(mask).mean(axis=0)
            return tuple(int(round(c)) for c in centre)
    return tuple(s // 2 for s in brain.shape)


def _slices(volume: np.ndarray, centre: tuple[int, ...]) -> list[np.ndarray]:
    if volume.ndim == 2:
        return [volume]
    z, y, x = centre
    return [volume[z], volume[:, y, :], volume[:, :, x]]


def _aspects(spacing: Sequence[float], ndim: int) -> list[float]:
    if ndim == 2:
        return [spacing[-2] / spacing[-1]]
    sz, sy, sx = spacing
    return [sy / sx, sz / sx, sz / sy]


def render_case_png(case: str, target: str, reference: np.ndarray, prediction: np.ndarray,
                    inputs: dict[str, np.ndarray], brain: np.ndarray, labels: np.ndarray | None = None,
                    uncertainty: np.ndarray | None = None, spacing: Sequence[float] | None = None,
                    title: str = "", normalisation: str = DEFAULT_NORMALISATION) -> bytes:
    """The PNG (as bytes) of one case: rows = views, columns = inputs, GT, prediction, |error|, uncertainty.

    GT, prediction and |error| are drawn as :func:`~synthunet.evaluation.report_panels.target_panels` gives
    them (normalised as the metrics with ``normalisation``); the figure states the normalisation.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    spacing = tuple(spacing) if spacing is not None else (1.0,) * reference.ndim
    centre = slice_centre(brain, labels)
    panels = target_panels(reference, prediction, brain, normalisation)
    (low, high), error_max = panels.window, panels.error_max
    columns: list[tuple[str, np.ndarray, dict]] = []
    for name, image in inputs.items():
        in_low, in_high = intensity_window(image, brain)
        columns.append((f"input {name}", image, {"cmap": "gray", "vmin": in_low, "vmax": in_high}))
    columns.append((f"ground truth {target}", panels.reference, {"cmap": "gray", "vmin": low, "vmax": high}))
    columns.append((f"prediction {target}", panels.prediction, {"cmap": "gray", "vmin": low, "vmax": high}))
    columns.append((f"|error| (0-{error_max:.3g})", panels.error, {"cmap": "magma", "vmin": 0.0,
                                                                    "vmax": error_max}))
    if uncertainty is not None:
        u_low, u_high = intensity_window(uncertainty, brain, (0.0, 99.5))
        columns.append(("uncertainty", uncertainty, {"cmap": "viridis", "vmin": u_low, "vmax": u_high}))
    views = VIEWS if reference.ndim == 3 else ("slice",)
    aspects = _aspects(spacing, reference.ndim)
    label_slices = _slices(labels > 0, centre) if labels is not None and (labels > 0).any() else None
    figure, axes = plt.subplots(len(views), len(columns), figsize=(2.3 * len(columns), 2.4 * len(views) + 0.8),
                                squeeze=False)
    for column, (name, volume, style) in enumerate(columns):
        for row, (view, image) in enumerate(zip(views, _slices(volume, centre))):
            axis = axes[row][column]
            origin = "upper" if (view in ("axial", "slice")) else "lower"
            axis.imshow(image, origin=origin, aspect=aspects[row], interpolation="nearest", **style)
            if label_slices is not None and name.startswith(("ground truth", "prediction")) \
                    and label_slices[row].any():
                axis.contour(label_slices[row], levels=[0.5], colors="red", linewidths=0.6, origin=origin)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=8)
            if column == 0:
                axis.set_ylabel(view, fontsize=8)
    centre_text = "centre " + ",".join(str(c) for c in centre) + (" (tumour)" if label_slices is not None else " (brain)")
    figure.suptitle(f"{case} - {target}   {title}   [{centre_text}]", fontsize=9)
    figure.text(0.5, 0.01, normalisation_caption(panels.normalisation), ha="center", va="bottom", fontsize=7,
                wrap=True)
    figure.tight_layout(rect=(0, 0.04, 1, 0.96))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def find_uncertainty_file(folder: Path, files: CaseFiles) -> Path | None:
    """Uncertainty map of a case: the prediction's file name, or ``{stem}_uncertainty|_std``, or ``{case}``."""
    name = files.prediction.name
    ending = next((e for e in sorted(SUPPORTED_FILE_ENDINGS, key=len, reverse=True) if name.endswith(e)), "")
    stem = name[: len(name) - len(ending)] if ending else name
    candidates = [folder / name, folder / files.case / name]
    for suffix in ("_uncertainty", "_std", "-uncertainty", "-std"):
        candidates += [folder / f"{stem}{suffix}{e}" for e in SUPPORTED_FILE_ENDINGS]
    candidates += [folder / f"{files.case}{e}" for e in SUPPORTED_FILE_ENDINGS]
    return next((c for c in candidates if c.is_file()), None)


def png_name(files: CaseFiles) -> str:
    """File name of a case's PNG inside the report folder."""
    return f"{files.case}__{files.target}.png"


def _report_job(job: tuple) -> dict:
    files, output_folder, input_paths, uncertainty_path, metric_rows, normalisation, label_scheme = job
    try:
        arrays = load_case_arrays(files)
        reference, prediction = arrays["reference"], arrays["prediction"]
        labels = arrays["labels"]
        brain = arrays["mask"] if arrays["mask"] is not None else default_brain_mask(reference, labels)
        if metric_rows is None:
            results = evaluate_case(reference, prediction, arrays["mask"], labels, mode="region",
                                    normalisation=normalisation, label_scheme=label_scheme)
            metric_rows = [{"case": files.case, "target": files.target, "region": region, **values}
                           for region, values in results.items()]
        inputs = {}
        for name, path in input_paths.items():
            image = read_image(path, dtype=np.float64)[0]
            if image.shape != reference.shape:
                raise EvaluationError(f"input {path} has shape {image.shape}, the reference {reference.shape}")
            inputs[name] = image
        uncertainty = None
        if uncertainty_path is not None:
            uncertainty = read_image(uncertainty_path, dtype=np.float64)[0]
            if uncertainty.shape != reference.shape:
                raise EvaluationError(f"uncertainty {uncertainty_path} has shape {uncertainty.shape}, "
                                      f"the reference {reference.shape}")
        from synthunet.dataset.image_io import read_geometry

        spacing = read_geometry(files.reference)[0].spacing
        by_region = {row["region"]: row for row in metric_rows}
        title = "  ".join(f"{region} SSIM {by_region[region]['SSIM']:.3f}" for region in ("brain", "tumour")
                          if region in by_region)
        png = render_case_png(files.case, files.target, reference, prediction, inputs, brain, labels, uncertainty,
                              spacing, title, normalisation)
    except (SynthUNetError, OSError) as error:  # a bug keeps its traceback
        raise EvaluationError(f"Report for case {files.case} ({files.target}): {error}",
                              hint=getattr(error, "hint", None)) from None
    write_bytes_atomic(Path(output_folder) / png_name(files), png)
    return {"case": files.case, "target": files.target, "png": png_name(files), "rows": metric_rows}


def _number(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value


def _cell(value: float, metric: str) -> str:
    if not math.isfinite(value):
        return "&ndash;"
    return f"{value:.2f}" if metric == "PSNR" else f"{value:.4f}"


def build_index_html(entries: Sequence[dict], title: str = "synthUNet evaluation report",
                     normalisation: str = DEFAULT_NORMALISATION) -> str:
    """Static HTML: a summary table (means) and one row per case x target sorted by brain SSIM ascending."""

    def key(entry):
        ssim_value = _number({r["region"]: r for r in entry["rows"]}.get("brain", {}).get("SSIM"))
        return (math.isnan(ssim_value), ssim_value, entry["case"], entry["target"])

    ordered = sorted(entries, key=key)
    header = "".join(f"<th>{html.escape(region)} {html.escape(metric)}</th>" for region, metric in _TABLE_METRICS)
    lines = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;font-size:13px}"
             "td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #ddd}"
             "details{margin:0.5em 0}</style>",
             "</head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(ordered)} case(s), sorted by brain SSIM, lowest (worst) first. "
             f"{html.escape(normalisation_caption(normalisation))} Ground truth and prediction share the "
             "(normalised) reference's 0.5-99.5 percentile window inside the brain; slices pass through the tumour "
             "centre (brain centre without tumour).</p>"]
    # means per target
    lines.append("<h2>Means</h2><table><tr><th class='l'>target</th><th>n</th>" + header + "</tr>")
    for target in sorted({e["target"] for e in ordered}):
        subset = [e for e in ordered if e["target"] == target]
        cells = []
        for region, metric in _TABLE_METRICS:
            values = [_number({r["region"]: r for r in e["rows"]}.get(region, {}).get(metric)) for e in subset]
            finite = [v for v in values if math.isfinite(v)]
            cells.append(f"<td>{_cell(float(np.mean(finite)) if finite else float('nan'), metric)}</td>")
        lines.append(f"<tr><td class='l'>{html.escape(target)}</td><td>{len(subset)}</td>{''.join(cells)}</tr>")
    lines.append("</table>")
    lines.append("<h2>Cases</h2><table><tr><th>#</th><th class='l'>case</th><th class='l'>target</th>" + header
                 + "<th class='l'>figure</th></tr>")
    for rank, entry in enumerate(ordered, 1):
        by_region = {r["region"]: r for r in entry["rows"]}
        cells = "".join(f"<td>{_cell(_number(by_region.get(region, {}).get(metric)), metric)}</td>"
                        for region, metric in _TABLE_METRICS)
        link = html.escape(entry["png"], quote=True)
        anchor = html.escape(f"{entry['case']}__{entry['target']}", quote=True)
        lines.append(f"<tr><td>{rank}</td><td class='l'><a href='#{anchor}'>{html.escape(entry['case'])}</a></td>"
                     f"<td class='l'>{html.escape(entry['target'])}</td>{cells}"
                     f"<td class='l'><a href='{link}'>png</a></td></tr>")
    lines.append("</table><h2>Figures</h2>")
    for entry in ordered:
        link = html.escape(entry["png"], quote=True)
        anchor = html.escape(f"{entry['case']}__{entry['target']}", quote=True)
        lines.append(f"<details id='{anchor}' open><summary>{html.escape(entry['case'])} "
                     f"({html.escape(entry['target'])})</summary><a href='{link}'>"
                     f"<img src='{link}' loading='lazy' alt='{anchor}'></a></details>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def make_report(prediction_folder: Path | str, reference_folder: Path | str, output_folder: Path | str, *,
                inputs_folder: Path | str | None = None, labels_folder: Path | str | None = None,
                masks_folder: Path | str | None = None, uncertainty_folder: Path | str | None = None,
                per_case_csv: Path | str | None = None, dataset_json: Path | str | None = None,
                dataset: str | int | None = None, target: str | None = None, targets: Sequence[str] | None = None,
                cases: Sequence[str] | None = None, allow_missing: bool = False, num_processes: int = 1,
                progress: bool = True, normalisation: str = DEFAULT_NORMALISATION) -> Path:
    """Write ``{case}__{target}.png`` per case and ``index.html`` into ``output_folder``; return the index path.

    Inputs come from ``inputs_folder`` (raw or BraTS layout; every channel but the target) or, without it,
    from the other channels of the reference folder. Metrics come from ``per_case_csv`` (a ``per_case.csv``
    of ``synth_evaluate``, computed with the same ``normalisation``) or are computed here (region mode).
    Ground truth, prediction and error are drawn normalised as the metrics (``normalisation``).
    """
    output_folder = Path(output_folder)
    normalisation = check_normalisation(normalisation, "region")
    channel_names = channel_names_from(dataset_json, dataset)
    label_scheme = label_scheme_from(dataset_json, dataset)
    matched = match_folders(reference_folder, prediction_folder, labels_folder, masks_folder, channel_names,
                            target=target, targets=list(targets) if targets else None,
                            cases=list(cases) if cases is not None else None, allow_missing=allow_missing)
    input_images = read_folder(inputs_folder, channel_names).images if inputs_folder is not None else None
    precomputed: dict[tuple[str, str], list[dict]] = {}
    if per_case_csv is not None:
        for row in read_csv_rows(per_case_csv, numeric=("n_voxels", "MAE", "MSE", "PSNR", "SSIM", "NCC")):
            precomputed.setdefault((row["case"], row["target"].upper()), []).append(row)
        _check_csv_normalisation(per_case_csv, precomputed, normalisation)
    jobs = []
    for files in matched:
        if input_images is not None:
            inputs = {n: p for n, p in input_images.get(files.case, {}).items() if n != files.target}
            if not inputs:
                message = f"no input image for case {files.case} in {inputs_folder}"
                if not allow_missing:
                    raise EvaluationError(message)
                warnings.warn(message, stacklevel=2)
        else:
            inputs = files.inputs
        uncertainty = None
        if uncertainty_folder is not None:
            uncertainty = find_uncertainty_file(Path(uncertainty_folder), files)
            if uncertainty is None:
                warnings.warn(f"no uncertainty map for case {files.case} in {uncertainty_folder}", stacklevel=2)
        rows = precomputed.get((files.case, files.target.upper()))
        if per_case_csv is not None and rows is None:
            warnings.warn(f"{per_case_csv} has no row for case {files.case} ({files.target}); computing metrics",
                          stacklevel=2)
        jobs.append((files, output_folder, inputs, uncertainty, rows, normalisation, label_scheme))
    output_folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folders=[output_folder])  # left by a killed earlier run
    entries = list(run_parallel(_report_job, jobs, num_processes, progress, "Rendering"))
    index = output_folder / INDEX_FILE
    write_text_atomic(index, build_index_html(entries, normalisation=normalisation))
    return index


def _check_csv_normalisation(per_case_csv: Path | str, rows: dict[tuple[str, str], list[dict]],
                             normalisation: str) -> None:
    """Refuse metrics computed with another normalisation than the one the figures are drawn with."""
    found = {str(row.get("normalisation") or "").strip().lower() for group in rows.values() for row in group} - {""}
    other = sorted(found - {normalisation})
    if other:
        raise EvaluationError(f"{per_case_csv} holds metrics computed with normalisation {', '.join(other)}, but the "
                              f"report draws with normalisation {normalisation}",
                              hint=f"run synth_report with --normalisation {other[0]} (as synth_evaluate was run)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth_report",
        description="Visual QA of synthetic images: one PNG per case (inputs, ground truth, prediction, absolute "
                    "error, optional uncertainty on axial/coronal/sagittal slices through the tumour centre) and "
                    "an index.html sorted by brain SSIM, worst first. Open index.html in a browser; no server needed.")
    parser.add_argument("-i", "--prediction", required=True, type=Path,
                        help="folder with the predicted images (raw or BraTS names)")
    parser.add_argument("-ref", "--reference", required=True, type=Path,
                        help="folder with the ground-truth images (raw or BraTS layout)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="report folder (created)")
    parser.add_argument("--inputs", type=Path, default=None,
                        help="folder with the input sequences (raw or BraTS layout); default: the reference folder's "
                             "other channels of each case")
    parser.add_argument("-l", "--labels", type=Path, default=None,
                        help="tumour label maps ({case}.nii.gz or {case}-seg.nii.gz); default: BraTS -seg files in the "
                             "reference folder. The slices pass through the tumour centre; its outline is drawn")
    parser.add_argument("-m", "--masks", type=Path, default=None,
                        help="brain masks ({case}.nii.gz); default: the reference's non-zero voxels, holes filled")
    parser.add_argument("--uncertainty", type=Path, default=None,
                        help="folder with uncertainty maps named like the predictions (or {name}_uncertainty / "
                             "{name}_std / {case}); shown as an extra column")
    parser.add_argument("--per_case_csv", type=Path, default=None,
                        help="per_case.csv from synth_evaluate to take the metrics from (default: compute them, "
                             "region mode)")
    parser.add_argument("--normalisation", "--normalization", choices=NORMALISATIONS, default=DEFAULT_NORMALISATION,
                        help="scale of ground truth, prediction and error, as synth_evaluate's region mode: "
                             "'percentile' (default): each volume rescaled by its own 0.5-99.5 brain percentiles; "
                             "'none': drawn as given (images already on one scale). Also used for the metrics")
    parser.add_argument("--dataset_json", type=Path, default=None, help="dataset.json naming the raw channels")
    parser.add_argument("-d", "--dataset", default=None, help="dataset id or name whose raw dataset.json to use")
    parser.add_argument("--target", default=None, help="channel name of prediction files named {case}.nii.gz")
    parser.add_argument("--targets", nargs="+", default=None, help="only these channel names")
    parser.add_argument("--cases", nargs="+", default=None, help="only these case ids")
    parser.add_argument("--allow_missing", action="store_true",
                        help="skip unmatched files with a warning instead of stopping")
    parser.add_argument("-np", "--num_processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``synth_report``; returns the exit code (errors through :func:`run_cli`)."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        index = make_report(args.prediction, args.reference, args.output, inputs_folder=args.inputs,
                            labels_folder=args.labels, masks_folder=args.masks,
                            uncertainty_folder=args.uncertainty, per_case_csv=args.per_case_csv,
                            dataset_json=args.dataset_json, dataset=args.dataset, target=args.target,
                            targets=args.targets, cases=args.cases, allow_missing=args.allow_missing,
                            num_processes=args.num_processes, progress=not args.quiet,
                            normalisation=args.normalisation)
    if not args.quiet:
        print(f"Wrote {index}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
