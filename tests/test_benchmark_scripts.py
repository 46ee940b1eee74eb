"""benchmarks/quality.py and benchmarks/speed.py (benchmarks/ is not a package: loaded with importlib)."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from synthunet.plans import ArchitecturePlan, ConfigurationPlan
from synthetic_raw import make_tiny_raw_dataset
from test_training_fixtures import single_thread  # noqa: F401 (fixture)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DATASET = "Dataset994_QualityBench"
NUMBER = r"-?\d+\.\d+"
MEAN_STD = re.compile(rf"^{NUMBER} ± {NUMBER}$")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def table_rows(markdown: str) -> list[dict]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]


def test_epochs_for_budget_by_hand():
    quality = load("quality")
    # one epoch = 0.2 s x 1.1 x (50 + 10 / 3) = 11.733 s; 3 min = 180 s -> 15.34 -> 15 epochs
    assert quality.epochs_for_budget(3, 0.2, 50, 10) == 15
    # 10 min, 1 s steps, 50 + 10 iterations: 600 / 58.667 = 10.23 -> 10
    assert quality.epochs_for_budget(10, 1.0, 50, 10) == 10
    # rounding, not flooring: 0.5 s x 1.1 x (20 + 0) = 11 s per epoch; 60 s -> 5.45 -> 5, 63 s -> 5.73 -> 6
    assert quality.epochs_for_budget(1, 0.5, 20, 0) == 5
    assert quality.epochs_for_budget(1.05, 0.5, 20, 0) == 6
    # less than one epoch fits: still one epoch
    assert quality.epochs_for_budget(0.01, 2.0, 50, 10) == 1
    with pytest.raises(ValueError):
        quality.epochs_for_budget(0, 0.2, 50, 10)
    with pytest.raises(ValueError):
        quality.epochs_for_budget(1, None, 50, 10)


@pytest.mark.usefixtures("single_thread")
def test_quality_benchmark_end_to_end(tmp_path, monkeypatch, capsys):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    make_tiny_raw_dataset(tmp_path / "raw" / DATASET, n_cases=10, shape=(24, 28, 26), seed=5)
    quality = load("quality")
    output = tmp_path / "out" / "quality.md"
    argv = ["-d", "994", "--targets", "t1c", "--folds", "0", "--minutes", "0.05", "--trainers", "SynthTrainer",
            "--baselines", "Baseline_Identity", "--configurations", "3d_fullres", "2.5d", "--orientations", "1",
            "-o", str(output), "--work_dir", str(tmp_path / "work"), "-np", "1",
            "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.05 --no_progress"]
    # the dataset is not planned yet: the benchmark runs synth_plan_and_preprocess itself
    assert quality.main(argv) == 0
    rows = table_rows(output.read_text())
    assert [(r["method"], r["configuration"], r["orientations"], r["target"]) for r in rows] == [
        ("Baseline_Identity", "3d_fullres", "—", "T1C"), ("SynthTrainer", "3d_fullres", "—", "T1C"),
        ("SynthTrainer", "2.5d", "1", "T1C")]
    splits = json.loads((tmp_path / "preprocessed" / DATASET / "splits_final.json").read_text())
    for row in rows:
        assert int(row["n cases"]) == len(splits[0]["val"])
        for region in ("brain", "tumour", "healthy"):
            for metric in ("PSNR", "SSIM"):
                assert MEAN_STD.match(row[f"{region} {metric}"]), (row, region, metric)
        assert re.fullmatch(NUMBER, row["train min/fold"]) and re.fullmatch(NUMBER, row["infer s/case"])
    header = output.read_text()
    for word in ("machine:", "date:", "budget: 0.05 min", "seed: 0", "folds: 0", DATASET, "torch"):
        assert word in header
    content = json.loads(output.with_suffix(".json").read_text())
    assert content["header"]["complete"] and len(content["rows"]) == 3
    assert all(0 < r["metrics"]["brain"]["SSIM"]["mean"] <= 1 for r in content["rows"])

    # resumable: a second run reuses the trained folds, predictions and evaluations
    capsys.readouterr()
    assert quality.main(argv) == 0
    printed = capsys.readouterr().out
    assert "synth_train" not in printed and "synth_predict" not in printed
    assert printed.count("reusing") >= 3 + 2
    assert table_rows(output.read_text()) == rows

    # clear errors, before any work
    assert quality.main([*argv, "--trainers", "SynthTrainer_Nope"]) == 2
    assert "Available: SynthTrainer" in capsys.readouterr().err
    assert quality.main([*argv, "--targets", "PD"]) == 2
    assert "choose from: T1N, T1C, T2W, T2F" in capsys.readouterr().err
    assert quality.main([*argv, "--folds", "7"]) == 2
    assert "Fold 7 does not exist" in capsys.readouterr().err
    assert quality.main(["-d", "777", "-o", str(output)]) == 2
    assert "Dataset777" in capsys.readouterr().err


@pytest.mark.usefixtures("single_thread")
def test_quality_benchmark_on_an_unseen_non_brats_dataset(tmp_path, monkeypatch):
    """Other channel names (no BraSyn layout: held-out cases presented in raw layout) and no labels."""
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    make_tiny_raw_dataset(tmp_path / "raw" / "Dataset995_Other", n_cases=5, shape=(20, 24, 22), seed=6,
                          channels=("T1", "T2", "FLAIR"), with_labels=False)
    quality = load("quality")
    output = tmp_path / "other.md"
    assert quality.main(["-d", "995", "--targets", "FLAIR", "--folds", "0", "--trainers", "--baselines",
                         "Baseline_Identity", "--configurations", "3d_fullres", "-o", str(output), "-np", "1",
                         "--work_dir", str(tmp_path / "work"),
                         "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.05 --no_progress"]) == 0
    [row] = table_rows(output.read_text())
    assert (row["method"], row["target"], row["n cases"]) == ("Baseline_Identity", "FLAIR", "1")
    assert MEAN_STD.match(row["brain PSNR"]) and MEAN_STD.match(row["brain SSIM"])
    # no labels: synth_evaluate reports the brain only
    assert row["tumour PSNR"] == row["tumour SSIM"] == row["healthy PSNR"] == row["healthy SSIM"] == "n/a"
    presented = sorted(p.name for p in (tmp_path / "work" / "input" / "FLAIR" / "fold_0").iterdir())
    assert presented and all(re.fullmatch(r".+_000[01]\.nii\.gz", name) for name in presented)


@pytest.mark.usefixtures("single_thread")
def test_quality_benchmark_oracle_row(tmp_path, monkeypatch, capsys):
    """A raw dataset with oracleTr/ (the example dataset's noise-free, bias-free signals) gets an "oracle" row per
    target: the held-out cases' oracle signal scored like a prediction, better than any method (here the identity)."""
    from synthunet.dataset.example import generate as example

    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    assert example.main(["-d", "993", "--num_cases", "6", "--spacing", "6", "--anisotropic_fraction", "0", "-np", "1",
                         "--no_progress"]) == 0
    quality = load("quality")
    assert quality.ORACLE_FOLDER == example.ORACLE_FOLDER
    output = tmp_path / "oracle.md"
    argv = ["-d", "993", "--targets", "T1C", "T2F", "--folds", "0", "--trainers", "--baselines", "Baseline_Identity",
            "--configurations", "3d_fullres", "-o", str(output), "-np", "1", "--work_dir", str(tmp_path / "work"),
            "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.05 --no_progress"]
    calls, original = [], quality.evaluate

    def recording(raw, predictions, dataset, cases, target, output, clock, *options):
        calls.append((Path(predictions).parts[-3], (raw, dataset, tuple(cases), target, options)))
        return original(raw, predictions, dataset, cases, target, output, clock, *options)

    monkeypatch.setattr(quality, "evaluate", recording)
    assert quality.main(argv) == 0
    # scored exactly like a prediction: the same synth_evaluate call except for the predictions and output folders
    assert [tag for tag, _ in calls] == ["oracle", "Baseline_Identity__3d_fullres__3d"] * 2
    assert calls[0][1] == calls[1][1] and calls[2][1] == calls[3][1]
    text = output.read_text()
    rows = table_rows(text)
    assert [(r["method"], r["configuration"], r["target"]) for r in rows] == [
        ("oracle", "—", "T1C"), ("Baseline_Identity", "3d_fullres", "T1C"),
        ("oracle", "—", "T2F"), ("Baseline_Identity", "3d_fullres", "T2F")]
    splits = json.loads((tmp_path / "preprocessed" / "Dataset993_BraTSPhantom" / "splits_final.json").read_text())
    assert all(int(r["n cases"]) == len(splits[0]["val"]) == 2 for r in rows)
    assert rows[0]["train min/fold"] == rows[0]["infer s/case"] == "n/a"
    assert "- oracle row: oracleTr/" in text
    for row in rows[0::2]:
        assert all(MEAN_STD.match(row[f"{region} {metric}"]) for region in ("brain", "tumour", "healthy")
                   for metric in ("PSNR", "SSIM")), row
    content = json.loads(output.with_suffix(".json").read_text())
    for oracle, identity in (content["rows"][0:2], content["rows"][2:4]):
        assert oracle["method"] == "oracle" and identity["method"] == "Baseline_Identity"
        for region in ("brain", "tumour", "healthy"):
            for metric in ("PSNR", "SSIM"):
                assert (oracle["metrics"][region][metric]["mean"] > identity["metrics"][region][metric]["mean"]), (
                    oracle["target"], region, metric)
        # not the reference itself: the oracle lacks the reference's noise and bias field
        assert oracle["metrics"]["brain"]["SSIM"]["mean"] < 0.99 and oracle["metrics"]["brain"]["PSNR"]["mean"] < 50
    # the oracle's evaluation is the ordinary synth_evaluate output, in the work folder like every row's
    per_case = tmp_path / "work" / "evaluation" / "oracle" / "T1C" / "fold_0" / "per_case.csv"
    assert {r["case"] for r in quality.read_per_case(per_case, "T1C")} == set(splits[0]["val"])
    # resumable: the unchanged oracle files are not scored again
    capsys.readouterr()
    assert quality.main(argv) == 0
    printed = capsys.readouterr().out
    assert "reusing the evaluation of the oracle T1C fold 0" in printed and "synth_evaluate" not in printed
    assert table_rows(output.read_text()) == rows


def test_speed_inference_block_is_parsed():
    speed = load("speed")
    stdout = "probe...\nVolume 96 x 96 x 64 (x, y, z), ...\nNetworks: ...\n\n| configuration | folds |\n|---|---|\n"
    assert speed.parse_inference_output(stdout).startswith("Volume 96 x 96 x 64")
    assert speed.parse_inference_output("nothing here") is None
    assert speed.inference_arguments(quick=True) == ["--shape", "64", "96", "96", "--repeats", "1", "--no-check"]


@pytest.mark.usefixtures("single_thread")
def test_speed_quick_preprocess_and_training(tmp_path, monkeypatch):
    """speed.py runs preprocess.py and train_throughput.py (subprocesses) and collects their numbers."""
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    monkeypatch.setenv("SYNTHUNET_NUM_THREADS", "1")
    make_tiny_raw_dataset(tmp_path / "raw" / "Dataset996_Speed", n_cases=5, shape=(20, 24, 22), seed=7)
    speed = load("speed")
    output = tmp_path / "speed.md"
    assert speed.main(["-d", "996", "--quick", "--only", "preprocess", "train", "--configurations", "3d_fullres",
                       "-o", str(output), "-np", "1",
                       "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.05 --no_progress"]) == 0
    text = output.read_text()
    assert "## Preprocessing" in text and "## Training throughput" in text and "## Inference" not in text
    content = json.loads(output.with_suffix(".json").read_text())
    [preprocessed] = content["parts"]["preprocess"]["results"]
    assert preprocessed["cases"] == 4 and preprocessed["cases_per_minute"] > 0
    [trained] = content["parts"]["train"]["results"]
    assert trained["configuration"] == "3d_fullres" and trained["iterations_per_s"] > 0
    assert 0 <= trained["data_wait_fraction"] <= 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_says_no_cuda_and_does_nothing(tmp_path):
    import subprocess

    result = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True,
                            env={**__import__("os").environ, "OUT": str(tmp_path)}, timeout=120)
    assert result.returncode == 3 and "no CUDA device" in result.stdout and "nothing was checked" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no log, no dataset: it stopped before doing anything


@pytest.mark.usefixtures("single_thread")
def test_train_throughput_pipeline_rows(tmp_path, monkeypatch, capsys):
    """--pipeline times one worker, the augmentation on the device and the old batchgenerators pipeline."""
    from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess

    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    make_tiny_raw_dataset(tmp_path / "raw" / "Dataset993_Pipeline", n_cases=5, shape=(20, 24, 22), seed=3)
    assert plan_and_preprocess(["-d", "993", "-np", "1", "--cpu_gflops", "40", "--cpu_training_minutes", "0.05",
                                "--no_progress"]) == 0
    throughput = load("train_throughput")
    json_path = tmp_path / "pipeline.json"
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "-d", "993", "--pipeline", "--batches", "2",
                                      "--shape", "3d_fullres:12x16x12:2", "--json", str(json_path)])
    throughput.main()
    [row] = json.loads(json_path.read_text())
    assert row["patch_size"] == [12, 16, 12] and row["batch_size"] == 2 and row["channels_read"] == 4
    assert row["worker_batch_s"] > 0 and row["device_augment_s"] > 0 and row["legacy_worker_batch_s"] > 0
    assert all(r >= p for r, p in zip(row["legacy_region"], [12, 16, 12]))
    assert "old pipeline" in capsys.readouterr().out


def test_protocol_shift_fits_the_in_domain_regression_on_other_cases_than_it_tests(monkeypatch, tmp_path):
    module = load("protocol_shift")
    cases = [f"Phantom_{i:03d}" for i in range(24)]
    train, test = module.split_cases(cases, 16)
    assert train == cases[:16] and test == cases[16:]
    with pytest.raises(SystemExit, match="num_train"):
        module.split_cases(cases, 24)
    # run_protocol hands fit_in_domain the training cases only, and predicts the test cases only
    seen = {}
    (tmp_path / "imagesTr").mkdir()
    for case in cases[:5]:
        (tmp_path / "imagesTr" / f"{case}_0000.nii.gz").touch()

    class Folder:
        target, inputs = "T1C", ["T1N", "T2W", "T2F"]
        config = ConfigurationPlan(dimension=3, data_identifier="data", spacing=(1.0, 1.0, 1.0),
                                   architecture=ArchitecturePlan("unet"))  # typed, as ModelFolder.config

        class dataset:
            channels = ["T1N", "T1C", "T2W", "T2F"]

    monkeypatch.setattr(module.ModelFolder, "load", staticmethod(lambda path: Folder()))
    monkeypatch.setattr(module, "fit_in_domain", lambda model, raw, train, channels: seen.setdefault("fit", train))
    monkeypatch.setattr(module, "read_case", lambda raw, case, channels: seen.setdefault("tested", []).append(case)
                        or ({}, None))
    monkeypatch.setattr(module, "score", lambda *a, **k: {})
    monkeypatch.setattr(module, "read_image", lambda *a, **k: (None, None))
    monkeypatch.setattr(module, "summarise", lambda values: {"n_cases": len(values)})

    class Quiet:
        def predict_from_arrays(self, *args):
            return None

    monkeypatch.setattr(module, "SynthPredictor", lambda *a, **k: Quiet())
    rows = module.run_protocol(Path("model"), Path("baseline"), 0, tmp_path, 3)
    assert seen["fit"] == cases[:3] and seen["tested"] == cases[3:5]
    assert rows["model"]["n_cases"] == 2 and "oracle" in rows


def test_architecture_speed_rows(monkeypatch, capsys):
    """benchmarks/architecture_speed.py plans each architecture and times its real steps (a fixed probe here)."""
    architecture_speed = load("architecture_speed")
    from synthunet.planning import cpu_probe, experiment
    from synthunet.planning.timing import CpuSpeed

    monkeypatch.setattr(experiment, "probe_cpu_speed", lambda dimension=3, *a, **k: CpuSpeed(50.0, 20.0))
    monkeypatch.setattr(cpu_probe, "probe_cpu_speed", lambda dimension=3, *a, **k: CpuSpeed(50.0, 20.0))
    assert architecture_speed.main(["--fingerprint_shape", "24", "28", "24", "--budget_s", "0.05",
                                    "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [a for a, _ in architecture_speed.CASES]
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        factor, estimate, measured, ratio, implied = (float(c) for c in cells[4:9])
        assert estimate > 0 and measured > 0
        assert ratio == pytest.approx(estimate / measured, rel=0.05, abs=0.01)  # printed to 3 decimals
        assert implied == pytest.approx(factor * estimate / measured, rel=0.05, abs=0.01)


def test_unpaired_toy_has_a_known_increasing_answer_and_runs(tmp_path, monkeypatch, single_thread):
    toy = load("unpaired_toy")
    data, seg = toy.toy_case(np.random.default_rng(0))
    brain = seg[0] >= 0
    assert np.all(data[:, ~brain] == 0)
    source, target = data[3][brain], data[2][brain]
    tissue = np.abs(source[:, None] - np.asarray(toy.SOURCE_LEVELS)[None]).argmin(axis=1)
    assert np.allclose([np.mean(tissue == t) for t in range(3)], toy.TISSUE_FRACTIONS, atol=0.01)
    assert np.abs(target - np.asarray(toy.TARGET_LEVELS)[tissue]).max() < 0.06  # T2W = f(T2F) up to 1 % noise
    assert np.all(np.diff(toy.SOURCE_LEVELS) > 0) and np.all(np.diff(toy.TARGET_LEVELS) > 0)

    for variable in ("synthUNet_raw", "synthUNet_preprocessed", "synthUNet_results", "SYNTHUNET_NUM_WORKERS"):
        monkeypatch.setenv(variable, "restored after the test")  # the script sets them for its own runs
    output = tmp_path / "toy.md"
    assert toy.main(["--steps", "2", "--seeds", "0", "--variants", "recipe", "no_support_mask", "no_prior",
                     "--work", str(tmp_path / "work"), "-o", str(output)]) == 0
    rows = json.loads(output.with_suffix(".json").read_text())
    assert [r["variant"] for r in rows] == ["recipe", "no_support_mask", "no_prior"]
    assert all(np.isfinite(r["brain_mae"]) and len(r["tissue_medians"]) == 3 for r in rows)
    assert output.read_text().count("\n| recipe | 0 | 2 |") == 1


@pytest.mark.slow
def test_the_unpaired_recipe_recovers_the_toy_mapping(tmp_path, monkeypatch, single_thread):
    """Issue 19, item 4: 300 unpaired steps of the planned recipe (AN-GAN on the unpaired tissue-matching prior)
    recover the toy's known increasing T2F -> T2W mapping: tissue order, each tissue's median within 0.06 of the
    truth (levels 0.15 / 0.35 / 0.9), brain MAE under 0.06. About 1.5 CPU minutes."""
    toy = load("unpaired_toy")
    for variable in ("synthUNet_raw", "synthUNet_preprocessed", "synthUNet_results", "SYNTHUNET_NUM_WORKERS"):
        monkeypatch.setenv(variable, "restored after the test")
    output = tmp_path / "toy.md"
    assert toy.main(["--steps", "300", "--seeds", "0", "--work", str(tmp_path / "work"), "-o", str(output)]) == 0
    [row] = json.loads(output.with_suffix(".json").read_text())
    assert row["variant"] == "recipe" and row["order_recovered"]
    assert np.allclose(row["tissue_medians"], toy.TARGET_LEVELS, atol=0.06), row["tissue_medians"]
    assert row["brain_mae"] < 0.06 and row["correlation"] > 0.95, row
