"""The downstream segmentation check (issue #9): the Dice + CE loss, SegmentationTrainer, synth_segment,
synth_evaluate --segmenter with synth_segment, and benchmarks/downstream_segmentation.py, on tiny data."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn
from torch.nn import functional

from synthetic_raw import make_tiny_raw_dataset
from synthunet.dataset.image_io import read_image, write_image
from synthunet.evaluation.metrics import brats_region_dice
from synthunet.prediction.checkpoints import load_checkpoint
from synthunet.prediction.checkpoints import load_trained_segmenter
from synthunet.training import TRAINERS, Experiment, ExperimentError, get_trainer_class
from synthunet.training.losses.segmentation import confusion_counts, dice_ce_loss, dice_from_counts, soft_dice
from test_training_fixtures import Interrupted, prepare, run_training, seed_everything, single_thread  # noqa: F401

RAW_DATASET = "Dataset996_SegTiny"
CHANNELS = ("T1N", "T1C", "T2W", "T2F")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------------------------- the loss


def test_dice_ce_loss_by_hand_on_a_2x2x2_patch():
    # two classes, every voxel p(class 1) = 0.75 (logits 0 and ln 3); labels: 3 voxels class 1, 4 class 0, one -1
    logits = torch.zeros((1, 2, 2, 2, 2))
    logits[:, 1] = math.log(3.0)
    labels = torch.tensor([[[[1, 1], [0, 0]], [[1, 0], [-1, 0]]]], dtype=torch.int8)[:, None]
    loss, parts = dice_ce_loss(logits, labels)
    cross_entropy = (3 * -math.log(0.75) + 5 * -math.log(0.25)) / 8   # -1 counts as background
    dice = (2 * 3 * 0.75 + 1e-5) / (8 * 0.75 + 3 + 1e-5)              # = (4.5 + s) / (9 + s), background left out
    assert float(parts["ce"]) == pytest.approx(cross_entropy, rel=1e-6)
    assert float(parts["dice_loss"]) == pytest.approx(1 - dice, rel=1e-6)
    assert float(loss) == pytest.approx(cross_entropy + 1 - dice, rel=1e-6)


@pytest.mark.parametrize("batch_dice", [True, False])
def test_dice_ce_loss_against_an_independent_computation(batch_dice):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn((2, 4, 2, 2, 2), generator=generator, dtype=torch.float64)
    labels = torch.randint(-1, 4, (2, 1, 2, 2, 2), generator=generator).to(torch.int8)
    loss, parts = dice_ce_loss(logits, labels, batch_dice=batch_dice)
    classes = labels[:, 0].long().clamp_min(0)
    assert float(parts["ce"]) == pytest.approx(float(functional.cross_entropy(logits, classes)), rel=1e-9)
    # soft Dice with plain loops over numpy arrays
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    y = classes.numpy()
    per_sample = []
    samples = [[0, 1]] if batch_dice else [[0], [1]]
    for group in samples:
        values = []
        for c in (1, 2, 3):
            intersection = sum(p[b, c][y[b] == c].sum() for b in group)
            total = sum(p[b, c].sum() + (y[b] == c).sum() for b in group)
            values.append((2 * intersection + 1e-5) / (total + 1e-5))
        per_sample.append(values)
    expected_dice = float(np.mean(per_sample))
    assert float(parts["dice_loss"]) == pytest.approx(1 - expected_dice, rel=1e-9)
    # a perfect, confident prediction: CE ~ 0, Dice ~ 1
    perfect = functional.one_hot(classes, 4).movedim(-1, 1).double() * 50
    loss, parts = dice_ce_loss(perfect, labels, batch_dice=batch_dice)
    assert float(parts["ce"]) < 1e-6 and float(parts["dice_loss"]) < 1e-6
    with pytest.raises(ValueError, match="does not fit 2 output classes"):
        soft_dice(torch.softmax(logits[:, :2], 1), classes)


def test_pseudo_dice_counts():
    labels = torch.tensor([0, 1, 1, 2, -1, 3], dtype=torch.int8).reshape(1, 1, 6, 1, 1)
    predicted = torch.tensor([0, 1, 2, 2, 0, 0]).reshape(1, 6, 1, 1)
    logits = functional.one_hot(predicted, 4).movedim(-1, 1).float()
    counts = confusion_counts(logits, labels)
    assert counts.tolist() == [[2, 1, 0], [1, 0, 1], [1, 1, 0], [0, 0, 1]]
    dice = dice_from_counts(counts + torch.tensor([[0, 0, 0]] * 3 + [[0, 0, -1]], dtype=torch.float64))
    assert dice[:3] == pytest.approx([0.8, 2 / 3, 2 / 3]) and math.isnan(dice[3])  # class absent everywhere


# --------------------------------------------------------------------------------------------- the trainer


@pytest.mark.usefixtures("single_thread")
def test_segmentation_trainer_trains_validates_and_lowers_its_loss(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    seed_everything(0)
    assert "SegmentationTrainer" not in TRAINERS  # the synthesis recipes (and benchmarks over them) stay as they are
    experiment = Experiment.resolve(990, "3d_fullres", "SEG", 0, trainer_name="SegmentationTrainer")
    assert experiment.target == "seg" and experiment.inputs == list(CHANNELS) and experiment.num_classes == 4
    assert experiment.model_folder.name == "SegmentationTrainer__synthUNetPlans__3d_fullres__seg"
    trainer = get_trainer_class("SegmentationTrainer")(experiment, device="cpu", num_epochs=2)
    trainer.run_training()
    fold = experiment.output_folder
    for name in ("checkpoint_latest.pth", "checkpoint_best.pth", "checkpoint_final.pth", "progress.png"):
        assert (fold / name).is_file(), name
    info = json.loads((experiment.model_folder / "model_info.json").read_text())
    assert info["task"] == "segmentation" and info["num_classes"] == 4 and info["target"] == "seg"
    assert info["labels"] == {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
    checkpoint = load_checkpoint(fold / "checkpoint_final.pth")  # weights_only=True
    assert len(checkpoint["logging"]["val_dice"]) == 2 and checkpoint["best_metric"] == max(
        v for v in checkpoint["logging"]["val_dice"] if not math.isnan(v))
    assert {"train_ce", "train_dice_loss", "val_dice_NCR", "val_dice_ED", "val_dice_ET"} <= set(checkpoint["logging"])
    assert "new best validation pseudo Dice" in (fold / "training_log.txt").read_text()
    # full-volume validation: a label map per validation case and Dice per region and label
    _, val_cases = experiment.fold_cases()
    rows = read_rows(fold / "validation" / "dice.csv")
    assert [r["case"] for r in rows] == val_cases
    assert set(rows[0]) == {"case", "WT", "TC", "ET", "Dice_NCR", "Dice_ED", "Dice_ET"}
    labels, _ = read_image(fold / "validation" / f"{val_cases[0]}.nii.gz", dtype=None)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    network, model_info, _ = load_trained_segmenter(experiment.model_folder, 0)
    assert model_info == info and network(torch.zeros((1, 4, 16, 16, 16))).shape == (1, 4, 16, 16, 16)

    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    assert set(batch) == {"data", "seg", "case_ids"} and batch["data"].shape == (2, 4, 16, 16, 16)
    assert batch["seg"].dtype == torch.int8 and set(batch["seg"].unique().tolist()) <= {-1, 0, 1, 2, 3}
    assert (batch["data"][batch["seg"].expand_as(batch["data"]) < 0] == 0).all()  # inputs 0 outside the brain
    trainer.network.train()
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(8)]
    assert losses[-1] < losses[0], losses
    # --val_only rebuilds the segmenter from checkpoint_final and writes the same files
    (fold / "validation" / "dice.csv").unlink()
    summary = trainer.run_validation_only()
    assert summary["num_cases"] == len(val_cases) and set(summary["dice"]) >= {"WT", "TC", "ET"}
    assert read_rows(fold / "validation" / "dice.csv") == rows


def _train_segmenter(results: Path, monkeypatch, interrupt_at: int | None = None, resume: bool = False) -> Path:
    monkeypatch.setenv("synthUNet_results", str(results))
    seed_everything(123)
    experiment = Experiment.resolve(990, "3d_fullres", "seg", 0, trainer_name="SegmentationTrainer")
    trainer = get_trainer_class("SegmentationTrainer")(experiment, device="cpu", num_epochs=3, final_validation=False)
    run_training(trainer, interrupt_at, resume)
    return experiment.output_folder


@pytest.mark.usefixtures("single_thread")
def test_segmentation_trainer_resumes_exactly(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    straight = _train_segmenter(tmp_path / "results_a", monkeypatch)
    with pytest.raises(Interrupted):  # dies in epoch 1, after checkpoint_latest of epoch 0
        _train_segmenter(tmp_path / "results_b", monkeypatch, interrupt_at=4)
    resumed = _train_segmenter(tmp_path / "results_b", monkeypatch, resume=True)
    a, b = load_checkpoint(straight / "checkpoint_final.pth"), load_checkpoint(resumed / "checkpoint_final.pth")
    assert a["epoch"] == b["epoch"] == 3
    for parameter in a["network_weights"]:
        assert torch.equal(a["network_weights"][parameter], b["network_weights"][parameter]), parameter
    for key in ("train_loss", "val_loss", "val_dice"):
        np.testing.assert_array_equal(a["logging"][key], b["logging"][key])  # NaN (no tumour label) equals NaN
    assert "resumed from checkpoint_latest.pth at epoch 1" in (resumed / "training_log.txt").read_text()


def test_segmentation_target_and_recipe_must_match(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    with pytest.raises(ExperimentError, match="use -tr SegmentationTrainer"):
        get_trainer_class("SynthTrainer")(Experiment.resolve(990, "3d_fullres", "seg", 0))
    with pytest.raises(ExperimentError, match="its TARGET is 'seg', not T1C"):
        get_trainer_class("SegmentationTrainer")(Experiment.resolve(990, "3d_fullres", "T1C", 0))
    with pytest.raises(ExperimentError, match="needs a 3D configuration"):
        get_trainer_class("SegmentationTrainer")(Experiment.resolve(990, "2.5d", "seg", 0))
    with pytest.raises(ExperimentError, match="residual_input"):
        get_trainer_class("SegmentationTrainer")(Experiment.resolve(990, "3d_fullres", "seg", 0),
                                                 residual_input="T1N")
    segmenter = Experiment.resolve(990, "3d_fullres", "seg", 0, inputs=["T1N", "T2F"])
    assert segmenter.inputs == ["T1N", "T2F"] and segmenter.model_info()["inputs"] == ["T1N", "T2F"]
    assert "task" not in Experiment.resolve(990, "3d_fullres", "T1C", 0).model_info()


# --------------------------------------------------------------------------------------------- synth_segment


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny raw dataset, planned and preprocessed (3d_fullres), and a segmenter trained on fold 0 with synth_train."""
    from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main
    from synthunet.training.cli import main as train_main

    root = tmp_path_factory.mktemp("segmentation")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        for key in ("raw", "preprocessed", "results"):
            patch.setenv(f"synthUNet_{key}", str(root / key))
        patch.setenv("SYNTHUNET_NUM_WORKERS", "0")
        raw = make_tiny_raw_dataset(root / "raw" / RAW_DATASET, n_cases=6, shape=(24, 28, 26), seed=3)
        assert plan_and_preprocess_main(["-d", "996", "-np", "1", "--cpu_gflops", "40", "--cpu_training_minutes",
                                         "0.05", "-c", "3d_fullres", "--no_progress"]) == 0
        seed_everything(0)
        assert train_main(["996", "3d_fullres", "seg", "0", "-tr", "SegmentationTrainer", "--device", "cpu"]) == 0
        splits = json.loads((root / "preprocessed" / RAW_DATASET / "splits_final.json").read_text())
        yield {"root": root, "raw": raw, "val": sorted(splits[0]["val"]),
               "model": root / "results" / RAW_DATASET / "SegmentationTrainer__synthUNetPlans__3d_fullres__seg"}
    torch.set_num_threads(previous_threads)


@pytest.fixture
def environment(trained, monkeypatch):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(trained["root"] / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield trained
    torch.set_num_threads(previous)


class ConstantLogits(nn.Module):
    """Predicts one class everywhere (a stand-in network with a known answer)."""

    def __init__(self, label: int, num_classes: int = 4) -> None:
        super().__init__()
        self.label, self.num_classes = label, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((x.shape[0], self.num_classes, *x.shape[2:]))
        logits[:, self.label] = 5.0
        return logits


def test_synth_segment_writes_label_maps_in_the_input_geometry(environment, tmp_path, capsys):
    from synthunet.inference.segment_cli import main as segment_main
    from synthunet.inference.segmentation import SegmentationPredictor

    raw = environment["raw"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    cases = environment["val"]
    for case in cases:
        for index in range(4):
            name = f"{case}_{index:04d}.nii.gz"
            (inputs / name).write_bytes((raw / "imagesTr" / name).read_bytes())
    # a missing T1C given as zeros: segmented anyway (the network sees zeros for it)
    array, geometry = read_image(inputs / f"{cases[0]}_0001.nii.gz")
    write_image(np.zeros_like(array), geometry, inputs / f"{cases[0]}_0001.nii.gz")
    output = tmp_path / "out"
    assert segment_main(["-i", str(inputs), "-o", str(output), "-d", "996", "-f", "0", "--disable_tta", "-npp", "0",
                         "-nps", "0", "--quiet"]) == 0
    assert sorted(p.name for p in output.iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
    predictor = SegmentationPredictor(environment["model"], folds=[0], use_mirroring=False)
    for case in cases:
        written = sitk.ReadImage(str(output / f"{case}.nii.gz"))
        reference = sitk.ReadImage(str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        assert written.GetSize() == reference.GetSize()
        assert written.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert written.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert written.GetDirection() == pytest.approx(reference.GetDirection())
        labels = sitk.GetArrayFromImage(written)
        assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "masksTr" / f"{case}.nii.gz"))) > 0
        assert (labels[~brain] == 0).all()
        images = {c: read_image(inputs / f"{case}_{i:04d}.nii.gz")[0] for i, c in enumerate(CHANNELS)}
        assert (predictor.predict_from_arrays(images, read_image(inputs / f"{case}_0000.nii.gz")[1]) == labels).all()

    # a network with a known answer: label 2 exactly inside the brain, 0 outside, on every case's own grid
    constant = SegmentationPredictor(environment["model"], folds=[0], use_mirroring=False,
                                     network_loader=lambda model, fold, checkpoint, device: ConstantLogits(2))
    known = tmp_path / "known"
    constant.predict_from_files(inputs, known, num_processes_preprocessing=0, num_processes_export=0, progress=False)
    for case in cases:
        labels = read_image(known / f"{case}.nii.gz", dtype=None)[0]
        brain = read_image(raw / "masksTr" / f"{case}.nii.gz", dtype=None)[0] > 0
        assert (labels == np.where(brain, 2, 0)).all()

    # errors: a case without a sequence file, no trained segmenter
    (inputs / f"{cases[1]}_0003.nii.gz").unlink()
    capsys.readouterr()
    assert segment_main(["-i", str(inputs), "-o", str(tmp_path / "x"), "-d", "996", "--quiet"]) == 2
    assert f"{cases[1]} lacks T2F" in capsys.readouterr().err
    assert segment_main(["-i", str(inputs), "-o", str(tmp_path / "x"), "-d", "996", "-tr", "Nope", "--quiet"]) == 2
    assert "No segmenter Nope__synthUNetPlans__3d_fullres__seg" in capsys.readouterr().err


def test_synth_evaluate_with_synth_segment_reports_real_synthetic_and_missing(environment, tmp_path, capsys):
    from synthunet.evaluation.cli import evaluate_main
    from synthunet.inference.segment_cli import main as segment_main

    raw, cases = environment["raw"], environment["val"]
    predictions = tmp_path / "pred"  # BraSyn names: a rescaled T1C, as a synthesis model writes it
    for case in cases:
        image, geometry = read_image(raw / "imagesTr" / f"{case}_0001.nii.gz")
        write_image(image * 0.5, geometry, predictions / f"{case}-t1c.nii.gz")
    command = (f"{sys.executable} -m synthunet.inference.segment_cli -i {{input}} -o {{output}} -d 996 -f 0 "
               f"--disable_tta -npp 0 -nps 0 --quiet")
    output, work = tmp_path / "evaluation", tmp_path / "work"
    assert evaluate_main(["-ref", str(raw / "imagesTr"), "-pred", str(predictions), "-l", str(raw / "labelsTr"),
                          "-d", "996", "--cases", *cases, "--segmenter", command, "--segmenter_work_folder",
                          str(work), "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert all(f"T1C      {s}" in printed for s in ("real", "synthetic", "missing"))
    rows = read_rows(output / "segmentation_dice.csv")
    assert [(r["case"], r["input_set"]) for r in rows] == [(c, s) for c in cases
                                                            for s in ("real", "synthetic", "missing")]
    # the missing set's T1C is zeros on the reference grid; the other sequences are the real ones
    zeros, geometry = read_image(work / "missing_T1C" / "input" / f"{cases[0]}_0001.nii.gz")
    assert not zeros.any() and geometry.shape == read_image(raw / "imagesTr" / f"{cases[0]}_0001.nii.gz")[1].shape
    # the real rows are synth_segment's label maps of the real images scored against the labels
    direct = tmp_path / "direct"
    assert segment_main(["-i", str(work / "real" / "input"), "-o", str(direct), "-d", "996", "-f", "0",
                         "--disable_tta", "-npp", "0", "-nps", "0", "--quiet"]) == 0
    for row in (r for r in rows if r["input_set"] == "real"):
        labels = read_image(raw / "labelsTr" / f"{row['case']}.nii.gz", dtype=None)[0]
        dice = brats_region_dice(labels, read_image(direct / f"{row['case']}.nii.gz", dtype=None)[0])
        assert [float(row[r]) for r in ("WT", "TC", "ET")] == pytest.approx([dice[r] for r in ("WT", "TC", "ET")])
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["downstream_segmentation"]["per_target"]["T1C"]) == {"real", "synthetic", "missing"}
    table = (output / "segmentation_dice.md").read_text()
    assert "| T1C | missing | 2 |" in table and "| T1C | real | 2 |" in table


# --------------------------------------------------------------------------------------------- the benchmark


def load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "benchmark_downstream_segmentation", Path(__file__).resolve().parents[1] / "benchmarks" /
        "downstream_segmentation.py")
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = benchmark  # its dataclass looks its module up
    spec.loader.exec_module(benchmark)
    return benchmark


def test_synthetic_sets_take_labels_so_that_one_target_can_be_compared_twice(tmp_path):
    benchmark = load_benchmark()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    channels = ["T1N", "T1C", "T2W", "T2F"]
    sets = benchmark.parse_synthetic([f"t1c={a}", f"unet:T2F={a}", f"cubic:t2f={b}"], channels)
    assert [(e.target, e.label, e.name, e.folder) for e in sets] == [
        ("T1C", None, "T1C", a), ("T2F", "unet", "T2F (unet)", a), ("T2F", "cubic", "T2F (cubic)", b)]
    for items, message in (([f"T2F={a}", f"t2f={b}"], "names T2F twice"),
                           ([f"x:T2F={a}", f"x:T2F={b}"], r"names T2F \(x\) twice"),
                           ([f":T2F={a}"], "takes"), ([f"../up:T2F={a}"], "takes"), ([f"T2F {a}"], "takes"),
                           ([f"unet:T2F={tmp_path / 'none'}"], "is not a folder"), ([f"T9={a}"], "T9")):
        with pytest.raises(benchmark.BenchmarkError, match=message):
            benchmark.parse_synthetic(items, channels)


@pytest.mark.slow  # four synth_segment processes: about a minute on a busy 2-core machine
def test_downstream_segmentation_benchmark_smoke(environment, tmp_path):
    benchmark = load_benchmark()
    raw, cases = environment["raw"], environment["val"]
    folders = {}
    for target, index in (("t1c", 1), ("t2f", 3)):
        folders[target] = tmp_path / f"pred_{target}"
        for case in cases:
            image, geometry = read_image(raw / "imagesTr" / f"{case}_{index:04d}.nii.gz")
            write_image(image * 2.0, geometry, folders[target] / f"{case}-{target}.nii.gz")
    output = tmp_path / "bench" / "segmentation.md"
    argv = ["-d", "996", "--minutes", "0.02", "--synthetic", f"T1C={folders['t1c']}", f"t2f={folders['t2f']}",
            "-o", str(output), "--work_dir", str(tmp_path / "work")]
    assert benchmark.main(argv) == 0
    lines = [line for line in output.read_text().splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == [
        "real", "synthetic-T1C", "synthetic-T2F", "zero-filled-T1C", "zero-filled-T2F"]
    assert all(line.split("|")[2].strip() == "2" for line in lines[1:])
    content = json.loads(output.with_suffix(".json").read_text())
    assert content["header"]["epochs"]["epochs"] >= 1 and content["header"]["n_cases"] == 2
    assert all(0 <= row["dice"][r]["mean"] <= 1 for row in content["rows"] for r in ("WT", "TC", "ET"))
    assert benchmark.main([*argv[:5], "T1C=/does/not/exist", "-o", str(output)]) == 2
    assert benchmark.main([*argv[:5], "T1C", "-o", str(output)]) == 2
