"""Benchmark of synthUNet preprocessing: cases per minute and peak memory at -np 1 and -np 2, and the
patch-read time of the two array formats (npy memory map vs blosc2 b2nd).

    python benchmarks/preprocess.py -d 501                # uses $synthUNet_raw
    python benchmarks/preprocess.py -d 501 --max_cases 8 --patch_read

Preprocessed output goes to a temporary folder (never to $synthUNet_preprocessed). The plans are read
from $synthUNet_preprocessed/DatasetXXX/{plans}.json when that exists; otherwise a fingerprint is
computed and minimal plans (one 3d_fullres configuration at the median spacing, or --spacing) are made.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _minimal_plans(raw_dataset: Path, spacing: list[float] | None) -> dict:
    from synthunet.fingerprint import compute_fingerprint
    from synthunet.preprocessing import normalization_plans_entry

    fingerprint = compute_fingerprint(raw_dataset, num_processes=2, progress=False)
    spacing = spacing or fingerprint["median_spacing"]
    configuration = {"dimension": 3, "data_identifier": "synthUNetPlans_3d_fullres", "spacing": spacing,
                     "resampling": {"order_data": 3, "order_seg": 0, "separate_z_anisotropy_threshold": 3.0}}
    return {"dataset_name": raw_dataset.name, "plans_name": "synthUNetPlans",
            "channel_names": fingerprint["channel_names"], "label_values": fingerprint["label_values"],
            "normalization": normalization_plans_entry(fingerprint), "configurations": {"3d_fullres": configuration}}


def _measure(raw_root: str, dataset_name: str, preprocessed_root: str, configuration: str, num_processes: int,
             file_format: str, queue) -> None:
    """Runs in a fresh process so that its peak memory belongs to this measurement only."""
    os.environ["synthUNet_raw"] = raw_root
    os.environ["synthUNet_preprocessed"] = preprocessed_root
    os.environ.setdefault("synthUNet_results", preprocessed_root)
    from synthunet.preprocessing import preprocess_dataset

    start = time.perf_counter()
    summary = preprocess_dataset(dataset_name, configurations=[configuration], num_processes=num_processes,
                                 overwrite=True, progress=False, file_format=file_format)
    seconds = time.perf_counter() - start
    processed = sum(v["processed"] for v in summary.values())
    queue.put({"num_processes": num_processes, "cases": processed, "seconds": seconds,
               "cases_per_minute": 60.0 * processed / seconds,
               "peak_rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "peak_rss_largest_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024})


def benchmark_throughput(raw_dataset: Path, plans: dict, configuration: str, process_counts: list[int],
                         max_cases: int | None, file_format: str) -> list[dict]:
    """Preprocess (a subset of) the dataset once per process count in a temporary folder."""
    results = []
    with tempfile.TemporaryDirectory(prefix="synthunet_bench_") as scratch:
        raw_root = Path(scratch) / "raw"
        subset = raw_root / raw_dataset.name
        if max_cases:  # link the first cases into a smaller raw dataset
            from synthunet.dataset.raw_cases import list_raw_cases

            cases = list_raw_cases(raw_dataset)[:max_cases]
            for case in cases:
                for path in [*case.images.values(), case.label, case.mask]:
                    if path is not None:
                        target = subset / path.parent.name / path.name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(path, target)
            content = json.loads((raw_dataset / "dataset.json").read_text())
            content["numTraining"] = len(cases)
            (subset / "dataset.json").write_text(json.dumps(content))
        else:
            raw_root.mkdir(parents=True)
            os.symlink(raw_dataset, subset)
        context = multiprocessing.get_context("spawn")
        for count in process_counts:
            preprocessed_root = Path(scratch) / f"preprocessed_np{count}"
            (preprocessed_root / raw_dataset.name).mkdir(parents=True)
            (preprocessed_root / raw_dataset.name / f"{plans['plans_name']}.json").write_text(json.dumps(plans))
            queue = context.Queue()
            process = context.Process(target=_measure, args=(str(raw_root), raw_dataset.name, str(preprocessed_root),
                                                             configuration, count, file_format, queue))
            process.start()
            result = queue.get()
            process.join()
            folder = preprocessed_root / raw_dataset.name
            result["output_mb"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
            results.append(result)
            print(f"-np {count}: {result['cases']} cases in {result['seconds']:.1f} s = "
                  f"{result['cases_per_minute']:.1f} cases/min; peak RSS main {result['peak_rss_main_mb']:.0f} MB, "
                  f"largest worker {result['peak_rss_largest_worker_mb']:.0f} MB; output {result['output_mb']:.0f} MB",
                  flush=True)
            shutil.rmtree(preprocessed_root)
    return results


def benchmark_patch_reads(shape: tuple[int, ...] = (100, 100, 100), channels: int = 4, repeats: int = 200) -> list[dict]:
    """Random 64^3 patches (all channels) and 3-slice 96^2 slabs from a brain-like volume, both formats."""
    from scipy.ndimage import gaussian_filter

    from synthunet.preprocessing.storage import FORMATS, open_array, save_array

    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = sum((g / r) ** 2 for g, r in zip(grids, (0.9, 0.95, 0.85))) < 1
    data = np.stack([gaussian_filter(rng.normal(size=shape), 2) * 0.3 + 0.5 + rng.normal(size=shape) * 0.02
                     for _ in range(channels)]).astype(np.float32)
    data[:, ~brain] = 0
    reads = {"patch_64^3": (64, 64, 64), "slab_3x96^2": (3, 96, 96)}
    results = []
    with tempfile.TemporaryDirectory(prefix="synthunet_patch_") as scratch:
        for file_format in FORMATS:
            start = time.perf_counter()
            path = save_array(data, Path(scratch) / f"case_{file_format}", file_format)
            write_seconds = time.perf_counter() - start
            array = open_array(Path(scratch) / f"case_{file_format}", mmap=True)
            result = {"format": file_format, "size_mb": path.stat().st_size / 1e6, "write_ms": 1e3 * write_seconds}
            for name, size in reads.items():
                corners = [[int(rng.integers(0, s - p + 1)) for s, p in zip(shape, size)] for _ in range(repeats)]
                start = time.perf_counter()
                for corner in corners:
                    patch = np.array(array[(slice(None),) + tuple(slice(c, c + p) for c, p in zip(corner, size))])
                result[f"{name}_ms"] = 1e3 * (time.perf_counter() - start) / repeats
                assert patch.shape == (channels, *size)
            start = time.perf_counter()
            np.asarray(open_array(Path(scratch) / f"case_{file_format}", mmap=False))
            result["full_load_ms"] = 1e3 * (time.perf_counter() - start)
            results.append(result)
            print(f"{file_format:5s}: {result['size_mb']:.1f} MB, write {result['write_ms']:.0f} ms, "
                  + ", ".join(f"{k} {result[k]:.2f} ms" for k in result if k.endswith("_ms") and k != "write_ms"),
                  flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", help="dataset id or name in $synthUNet_raw (omit for --patch_read only)")
    parser.add_argument("-p", "--plans_name", default="synthUNetPlans")
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-np", "--num_processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max_cases", type=int, default=None, help="only the first N cases")
    parser.add_argument("--spacing", type=float, nargs=3, default=None, help="target spacing (z y x) for made-up plans")
    parser.add_argument("--file_format", default="npy", choices=["npy", "b2nd"])
    parser.add_argument("--patch_read", action="store_true", help="also time patch reads of both array formats")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    results: dict = {}
    if args.dataset:
        from synthunet.dataset.identifiers import raw_dataset_folder

        raw_dataset = raw_dataset_folder(args.dataset)
        plans = None
        try:
            from synthunet.preprocessing import load_plans

            plans = load_plans(args.dataset, args.plans_name)
            print(f"plans: $synthUNet_preprocessed/{raw_dataset.name}/{args.plans_name}.json")
        except Exception:
            plans = _minimal_plans(raw_dataset, args.spacing)
            print(f"plans: made up (3d_fullres at spacing {plans['configurations']['3d_fullres']['spacing']})")
        results["throughput"] = benchmark_throughput(raw_dataset, plans, args.configuration, args.num_processes,
                                                     args.max_cases, args.file_format)
    if args.patch_read:
        results["patch_read"] = benchmark_patch_reads()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
