"""Seconds per BraTS-size case through the real ``synth_predict`` pipeline, on this machine's own plans.

    python benchmarks/inference_case.py --work /tmp/inference_case            # every row (~20 min on 2 cores)
    python benchmarks/inference_case.py --work /tmp/inference_case --rows 3d_1 25_9

What it does: generates 5 example cases at 1 mm (``synth_make_example_dataset``), plans and preprocesses them
for this machine (``3d_fullres`` and ``2.5d``), trains each configuration for one epoch on fold ``all`` (the
weights do not matter for the time; the architecture, patch and preprocessing are what the planner chose), copies
that checkpoint to folds 0-4 (five-fold rows: same weights, five passes), and pads case 0 onto the BraTS grid
240 x 240 x 155 at 1 mm. Each row then runs ``SynthPredictor.predict_from_files`` in this process (no worker
processes) and reports the wall time of the case: reading, preprocessing, network, reverting and writing. The
network share is the time spent in ``predict_preprocessed`` during that run. The FLOP lower limit is windows
run x FLOPs of the U-Net per window / the conv throughput a short probe measures (the voxel-regression prior is
not counted).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import probe_conv_flops  # noqa: E402

from synthunet.prediction.model_folder import ModelFolder  # noqa: E402
from synthunet.prediction.orientation_fusion import predict_volume_25d  # noqa: E402
from synthunet.inference.predictor import SynthPredictor  # noqa: E402
from synthunet.prediction.sliding_window import predict_volume_sliding_window  # noqa: E402
from synthunet.inference.testing import ConstantNetwork  # noqa: E402
from synthunet.inference.time_budget import DEFAULT_CPU_BUDGET_S  # noqa: E402
from synthunet.planning.layers import unet_layers  # noqa: E402
from synthunet.planning.timing import forward_flops  # noqa: E402

DATASET = 597
BRATS_GRID = (240, 240, 155)
INPUTS = {0: "t1n", 2: "t2w", 3: "t2f"}


@dataclass(frozen=True)
class Setting:
    key: str
    configuration: str
    folds: int
    tta: bool
    orientations: int
    window: str
    budget_s: float | None = None

    def describe(self) -> str:
        what = "3d_fullres" if self.configuration == "3d_fullres" else f"2.5d, {self.orientations} orientation(s)"
        if self.budget_s:
            return f"{self.configuration}, synth_predict's CPU default (time budget {self.budget_s:.0f} s)"
        return f"{what}, {self.folds} fold(s), TTA {'on' if self.tta else 'off'}, window {self.window}"


SETTINGS = [Setting("3d_1", "3d_fullres", 1, False, 1, "patch"),
            Setting("3d_1_auto", "3d_fullres", 1, False, 1, "auto"),
            Setting("3d_1_tta", "3d_fullres", 1, True, 1, "patch"),
            Setting("3d_5", "3d_fullres", 5, False, 1, "patch"),
            Setting("3d_5_tta", "3d_fullres", 5, True, 1, "patch"),
            Setting("25_1", "2.5d", 1, False, 1, "patch"),
            Setting("25_3", "2.5d", 1, False, 3, "patch"),
            Setting("25_9", "2.5d", 1, False, 9, "patch"),
            Setting("25_9_auto", "2.5d", 1, False, 9, "auto"),
            Setting("3d_default", "3d_fullres", 5, True, 1, "patch", DEFAULT_CPU_BUDGET_S),
            Setting("25_default", "2.5d", 5, True, 9, "patch", DEFAULT_CPU_BUDGET_S)]


def _run(command: list[str], env: dict) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def prepare(work: Path, configurations: list[str], device: str = "cpu") -> dict[str, Path]:
    """Dataset, plans for ``device``, one-epoch models and five fold copies; returns ``{configuration: model
    folder}``. Give each device its own work folder."""
    env = {**os.environ, "synthUNet_raw": str(work / "raw"), "synthUNet_preprocessed": str(work / "preprocessed"),
           "synthUNet_results": str(work / "results")}
    raw = work / "raw" / f"Dataset{DATASET}_BraTSPhantom"
    if not raw.is_dir():
        _run(["synth_make_example_dataset", "-d", str(DATASET), "--num_cases", "5", "--spacing", "1",
              "--anisotropic_fraction", "0", "--no_oracle", "--no_progress"], env)
    plans = work / "preprocessed" / raw.name / "synthUNetPlans.json"
    if not plans.is_file() or not set(configurations) <= set(json.loads(plans.read_text())["configurations"]):
        _run(["synth_plan_and_preprocess", "-d", str(DATASET), "-c", "3d_fullres", "2.5d", "--device", device], env)
    models = {}
    for configuration in configurations:
        folder = work / "results" / raw.name / f"SynthTrainer__synthUNetPlans__{configuration}__T1C"
        if not (folder / "fold_all" / "checkpoint_final.pth").is_file():
            _run(["synth_train", str(DATASET), configuration, "T1C", "all", "--epochs", "1",
                  "--skip_final_validation", "--device", device], env)
        for fold in range(5):
            (folder / f"fold_{fold}").mkdir(exist_ok=True)
            shutil.copy(folder / "fold_all" / "checkpoint_final.pth", folder / f"fold_{fold}" / "checkpoint_final.pth")
        models[configuration] = folder
    case_folder = work / "brats_case" / "Case_000"
    if not case_folder.is_dir():
        case_folder.mkdir(parents=True)
        for channel, name in INPUTS.items():
            write_on_grid(raw / "imagesTr" / f"Phantom_000_{channel:04d}.nii.gz",
                          case_folder / f"Case_000-{name}.nii.gz")
    return models


def write_on_grid(source: Path, destination: Path, grid=BRATS_GRID) -> None:
    """Centre ``source`` on ``grid`` (zero padding, or a central crop of the phantom's empty margin)."""
    image = nib.load(str(source))
    array = np.asarray(image.dataobj, dtype=np.float32)
    out = np.zeros(grid, np.float32)
    source_slices, target_slices = [], []
    for size, target in zip(array.shape, grid):
        offset = abs(size - target) // 2
        source_slices.append(slice(offset, offset + target) if size > target else slice(0, size))
        target_slices.append(slice(0, target) if size > target else slice(offset, offset + size))
    out[tuple(target_slices)] = array[tuple(source_slices)]
    nib.save(nib.Nifti1Image(out, np.diag([1.0, 1.0, 1.0, 1.0])), str(destination))


def time_setting(setting: Setting, model: Path, case_folder: Path, output: Path, probe: float,
                 device: str = "cpu") -> dict:
    """One row: the case through ``SynthPredictor`` on ``device``; the FLOP limit only on a CPU (``probe`` is a
    CPU convolution's rate)."""
    choice: list[str] = []
    predictor = SynthPredictor(model, folds=list(range(setting.folds)), device=device, use_mirroring=setting.tta,
                               orientations=setting.orientations, window=setting.window,
                               time_budget_s=setting.budget_s, report=choice.append)
    folder = predictor.model_for("T1C")
    network_seconds, preprocessed = [], []
    original = predictor.predict_preprocessed

    def timed_network(data, *args, **kwargs):
        preprocessed.append(data)
        started = time.perf_counter()
        result = original(data, *args, **kwargs)
        network_seconds.append(time.perf_counter() - started)
        return result

    predictor.predict_preprocessed = timed_network
    shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    predictor.predict_from_files(case_folder, output, "T1C", num_processes_preprocessing=0,
                                 num_processes_export=0, progress=False)
    total = time.perf_counter() - started
    network = sum(network_seconds)
    # windows one pass runs (background skipped as in the real run), counted with a network that costs nothing
    count = [0]

    def add(n: int) -> None:
        count[0] += n

    divisor = folder.tile_divisor if setting.window == "auto" else None
    chosen = predictor.chosen_setting("T1C")
    tensor = torch.as_tensor(preprocessed[0])
    if folder.is_25d:
        predict_volume_25d(ConstantNetwork(0.5), tensor, folder.num_slices, folder.patch_size, chosen.orientations,
                           chosen.step_size, False, None, "cpu", progress=add, tile_divisor=divisor)
    else:
        predict_volume_sliding_window(ConstantNetwork(0.5), tensor, folder.patch_size, chosen.step_size, False, None,
                                      "cpu", progress=add, tile_divisor=divisor)
    passes = chosen.passes_per_window(folder.is_25d) * len(chosen.folds)
    architecture = folder.config.architecture
    flops = forward_flops(unet_layers(architecture.kwargs, folder.patch_size, folder.network_input_channels, 1))
    lower = count[0] * passes * flops / probe if setting.window == "patch" and device == "cpu" else float("nan")
    return {"setting": setting, "total": total, "network": network, "windows": count[0],
            "preprocessed_shape": tuple(tensor.shape[1:]), "lower": lower, "choice": " ".join(choice)}


def table(results: list[dict], probe: float, models: dict[str, Path], device: str = "cpu") -> str:
    folders = {c: ModelFolder.load(m) for c, m in models.items()}
    where = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    lines = [f"{where}; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; CPU conv probe {probe / 1e9:.1f} GFLOP/s; "
             f"{time.strftime('%Y-%m-%d')}.",
             "Plans: " + "; ".join(f"{c}: patch {f.patch_size}, features "
                                   f"{f.config.architecture.kwargs['features_per_stage']}"
                                   for c, f in folders.items()) + ".",
             "", "| setting | preprocessed shape | windows per pass | seconds per case | of which network | "
             "FLOP lower limit s | ratio |", "|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = r["network"] / r["lower"] if r["lower"] == r["lower"] else float("nan")
        lower = f"{r['lower']:.1f}" if r["lower"] == r["lower"] else "—"
        lines.append(f"| {r['setting'].describe()} | {' x '.join(map(str, r['preprocessed_shape']))} | {r['windows']} "
                     f"| **{r['total']:.1f}** | {r['network']:.1f} | {lower} | "
                     f"{'—' if ratio != ratio else f'{ratio:.2f}'} |")
    choices = [f"- {r['setting'].describe()}: {r['choice']}" for r in results if r["choice"]]
    return "\n".join(lines + ([""] + choices if choices else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (reused when run again)")
    parser.add_argument("--rows", nargs="+", choices=[s.key for s in SETTINGS], default=[s.key for s in SETTINGS])
    parser.add_argument("-o", "--output", type=Path, help="also write the markdown table here")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="plan, train and predict on this device (cuda: no FLOP limit column)")
    args = parser.parse_args(argv)
    chosen = [s for s in SETTINGS if s.key in args.rows]
    models = prepare(args.work, sorted({s.configuration for s in chosen}), args.device)
    probe = probe_conv_flops()
    if args.device == "cuda":  # warm-up, not recorded: the CUDA context and cuDNN's choice of kernels
        time_setting(chosen[0], models[chosen[0].configuration], args.work / "brats_case", args.work / "out", probe,
                     args.device)
    results = []
    for setting in chosen:
        results.append(time_setting(setting, models[setting.configuration], args.work / "brats_case",
                                    args.work / "out", probe, args.device))
        print(f"{setting.describe()}: {results[-1]['total']:.1f} s {results[-1]['choice']}", flush=True)
    text = table(results, probe, models, args.device)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
