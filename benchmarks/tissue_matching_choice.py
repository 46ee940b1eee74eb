"""Does tissue matching choose well without pairs? Every candidate map against the paired truth.

    python benchmarks/tissue_matching_choice.py -d 501 --pairs T2F:T2W T2W:T2F T1N:T1C --folds 0 1 \\
        -o documentation/benchmarks_tissue_matching.md

For each ``SOURCE:TARGET`` and fold, the seven candidates of ``synthunet/training/tissue_matching.py`` are built
and scored by edge difference exactly as the unpaired fit does (source from one half of the fold's training cases,
target from the other; ``-p``/``-c`` give the preprocessed data, default synthUNetPlans 3d_fullres). Then, for the
record only, each candidate maps the fold's validation cases and is scored against their real target with
``evaluate_case`` (region mode, brain PSNR / SSIM) on the preprocessed grid (not the exported geometry of
``synth_predict``). A good choice rule picks a candidate near the best by SSIM; the table says which rank it got.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (benchmarks/ is not a package; its helpers are shared)


def parse_pair(text: str) -> tuple[str, str]:
    """``"T2F:T2W"`` -> ``("T2F", "T2W")``."""
    source, _, target = text.partition(":")
    if not source or not target or source == target:
        raise quality.BenchmarkError(f"--pairs takes SOURCE:TARGET with two different sequences, got {text!r}")
    return source, target


def validation_scores(candidate, experiment, cases: list[str]) -> tuple[float, float]:
    """Mean brain PSNR and SSIM of ``candidate`` applied to the source of ``cases`` against their real target."""
    from synthunet.evaluation.metrics import evaluate_case
    from synthunet.preprocessing import load_case

    psnr, ssim = [], []
    for case in cases:
        data, seg, _ = load_case(experiment.data_folder, case)
        brain, labels = np.asarray(seg[0]) >= 0, np.asarray(seg[0])
        source = np.asarray(data[experiment.input_indices[0]], dtype=np.float64)
        prediction = np.where(brain, candidate(source), 0.0)
        metrics = evaluate_case(np.asarray(data[experiment.target_index]), prediction, brain,
                                np.where(labels > 0, labels, 0))["brain"]
        psnr.append(metrics["PSNR"])
        ssim.append(metrics["SSIM"])
    return float(np.mean(psnr)), float(np.mean(ssim))


def setting_rows(args: argparse.Namespace, source: str, target: str, fold: int, clock: quality.Clock) -> list[dict]:
    from synthunet.training import Experiment
    from synthunet.training.prior import unpaired_images
    from synthunet.training.tissue_matching import candidates, choose_by_edges

    experiment = Experiment.resolve(args.dataset, args.configuration, target, fold, "Baseline_TissueMatching",
                                    args.plans, [source])
    sources, targets = (list(images) for images in unpaired_images(experiment, "tissue matching", clock.say))
    validation = experiment.fold_cases()[1]
    found = candidates(sources, targets)
    chosen, scores = choose_by_edges(found, sources, targets, experiment.config.spacing)
    rows = []
    for candidate in found:
        psnr, ssim = validation_scores(candidate, experiment, validation)
        rows.append({"source": source, "target": target, "fold": fold, "candidate": candidate.name,
                     "edge_difference": scores[candidate.name], "chosen": candidate is chosen,
                     "brain_psnr": psnr, "brain_ssim": ssim, "n_cases": len(validation)})
    order = sorted(rows, key=lambda r: -r["brain_ssim"])
    for row in rows:
        row["ssim_rank"] = order.index(row) + 1
    clock.say(f"{target} from {source}, fold {fold}: chose {chosen.name} (SSIM rank "
              f"{next(r['ssim_rank'] for r in rows if r['chosen'])} of {len(rows)})")
    return rows


def markdown(content: dict) -> str:
    h = content["header"]
    lines = ["# Tissue matching: the unpaired choice against the paired truth", "",
             f"- dataset: {h['dataset']}, plans {h['plans']} {h['configuration']} (preprocessed grid)",
             f"- date: {h['date']} ({h['wall_minutes']:.1f} min); machine: {quality.machine_line(h['machine'])}",
             f"- command: `{h['command']}`", "",
             "| target from source | fold | candidate | edge difference | chosen | val brain PSNR | val brain SSIM | "
             "SSIM rank |", "|---|---|---|---|---|---|---|---|"]
    for r in content["rows"]:
        lines.append(f"| {r['target']} from {r['source']} | {r['fold']} | {r['candidate']} | "
                     f"{r['edge_difference']:.4f} | {'**yes**' if r['chosen'] else ''} | {r['brain_psnr']:.2f} | "
                     f"{r['brain_ssim']:.3f} | {r['ssim_rank']} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    pairs = [parse_pair(p) for p in args.pairs]
    clock = quality.Clock()
    started = datetime.datetime.now().astimezone()
    machine = quality.machine_info()
    rows = [row for source, target in pairs for fold in args.folds
            for row in setting_rows(args, source, target, fold, clock)]
    header = {"dataset": str(args.dataset), "plans": args.plans, "configuration": args.configuration,
              "date": started.strftime("%Y-%m-%d %H:%M %Z"), "wall_minutes": (time.time() - clock.started) / 60.0,
              "machine": machine, "command": "python benchmarks/tissue_matching_choice.py " + " ".join(argv)}
    content = {"header": header, "rows": rows}
    quality.write_report(args.output, markdown(content), content, clock)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", default="501", help="dataset id or name (default 501), preprocessed")
    parser.add_argument("--pairs", nargs="+", default=["T2F:T2W", "T2W:T2F"], help="SOURCE:TARGET (default "
                        "T2F:T2W T2W:T2F)")
    parser.add_argument("--folds", nargs="+", type=int, default=[0], help="folds (default 0)")
    parser.add_argument("-p", "--plans", default="synthUNetPlans", help="plans (default synthUNetPlans)")
    parser.add_argument("-c", "--configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    parser.add_argument("-o", "--output", type=Path, default=Path("tissue_matching_choice.md"),
                        help="markdown table (a .json beside it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return quality.cli_main(argv, build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
