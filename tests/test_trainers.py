"""Every recipe trains on CPU, writes its model folder, and lowers its loss on a fixed batch."""
from __future__ import annotations

import json

import pytest
import torch

from synthunet.prediction.checkpoints import load_checkpoint
from synthunet.training import TRAINERS, Experiment, get_trainer_class, load_trained_model
from synthunet.training.losses.perceptual import VGG19Features
from test_training_fixtures import DATASET, prepare, seed_everything, single_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

EXPECTED = ["SynthTrainer", "SynthTrainer_L1Masked", "SynthTrainer_L1SSIM", "SynthTrainer_Freq", "SynthTrainer_GAN",
            "SynthTrainer_Perceptual", "SynthTrainer_Combined", "SynthTrainer_CombinedNoVGG",
            "SynthTrainer_LocalLoss", "SynthTrainer_GDL", "SynthTrainer_SRGAN", "SynthTrainer_SRGANNoVGG",
            "SynthTrainer_ProtocolAug", "Baseline_Identity", "Baseline_VoxelRegression"]
# (trainer, configuration): every recipe once, the adversarial ones in both dimensions
CASES = [("SynthTrainer", "3d_fullres"), ("SynthTrainer", "2.5d"), ("SynthTrainer_ProtocolAug", "2.5d"), ("SynthTrainer_L1Masked", "2.5d"),
         ("SynthTrainer_L1SSIM", "3d_fullres"), ("SynthTrainer_Freq", "2.5d"), ("SynthTrainer_GAN", "3d_fullres"),
         ("SynthTrainer_GAN", "2.5d"), ("SynthTrainer_Perceptual", "2.5d"), ("SynthTrainer_Combined", "2.5d"),
         ("SynthTrainer_CombinedNoVGG", "3d_fullres"), ("SynthTrainer_LocalLoss", "3d_fullres"),
         ("SynthTrainer_GDL", "3d_fullres"), ("SynthTrainer_GDL", "2.5d")]


def test_registry_lists_every_trainer():
    assert list(TRAINERS) == EXPECTED
    assert all(issubclass(cls, TRAINERS["SynthTrainer"]) for cls in TRAINERS.values())
    with pytest.raises(ValueError, match="Did you mean SynthTrainer_GAN"):
        get_trainer_class("synthtrainer_gan")


@pytest.fixture
def vgg_weights(tmp_path, monkeypatch):
    torch.manual_seed(1)
    path = tmp_path / "vgg19_random.pth"
    torch.save(VGG19Features().state_dict(), path)
    monkeypatch.setenv("SYNTHUNET_VGG19_WEIGHTS", str(path))
    return path


@pytest.mark.parametrize("name,configuration", CASES)
def test_recipe_trains_two_iterations_and_lowers_its_loss(tmp_path, monkeypatch, vgg_weights, name, configuration):
    prepare(tmp_path, monkeypatch)
    seed_everything(0)
    experiment = Experiment.resolve(990, configuration, "T1C", 0, trainer_name=name)
    trainer = get_trainer_class(name)(experiment, device="cpu", num_epochs=1, final_validation=False)
    trainer.run_training()
    fold = experiment.output_folder
    for file in ("checkpoint_latest.pth", "checkpoint_best.pth", "checkpoint_final.pth", "training_log.txt",
                 "progress.png"):
        assert (fold / file).is_file(), file
    info = json.loads((experiment.model_folder / "model_info.json").read_text())
    assert info["trainer"] == name and info["target"] == "T1C" and info["inputs"] == ["T1N", "T2W", "T2F"]
    assert (info.get("num_slices") == 3) == (configuration == "2.5d")
    checkpoint = load_checkpoint(fold / "checkpoint_final.pth")  # weights_only=True
    assert checkpoint["epoch"] == 1 and len(checkpoint["logging"]["train_loss"]) == 1
    network, model_info, plans = load_trained_model(experiment.model_folder, 0, "cpu")
    assert model_info == info and not network.training

    # the loss goes down over a handful of steps on one fixed batch
    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    trainer.network.train()
    key = "supervised" if hasattr(trainer, "discriminator") else "loss"
    losses = [float(trainer.train_step(batch)[key]) for _ in range(8)]
    assert losses[-1] < losses[0], losses


def test_local_loss_needs_t1n_to_t1c(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    experiment = Experiment.resolve(990, "3d_fullres", "T2F", 0, trainer_name="SynthTrainer_LocalLoss")
    with pytest.raises(ValueError, match="needs target T1C and T1N among the inputs"):
        get_trainer_class("SynthTrainer_LocalLoss")(experiment)
    experiment = Experiment.resolve(990, "3d_fullres", "T1C", 0, inputs=["T2W", "T2F"])
    with pytest.raises(ValueError, match="needs target T1C and T1N"):
        get_trainer_class("SynthTrainer_LocalLoss")(experiment)


def test_local_loss_switches_stage(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    experiment = Experiment.resolve(990, "3d_fullres", "T1C", 0, trainer_name="SynthTrainer_LocalLoss")
    trainer = get_trainer_class("SynthTrainer_LocalLoss")(experiment, num_epochs=10, final_validation=False)
    trainer.initialize()
    trainer.on_epoch_start(7)
    assert trainer.weights == (1.0, 1.0, 1.0) and trainer.optimizer.param_groups[0]["lr"] == trainer.schedule.lr_at(7)
    trainer.on_epoch_start(8)
    assert trainer.weights == (0.1, 0.1, 10.0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 3e-3 * (1 - 0.8) ** 0.9)


def test_residual_input(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    experiment = Experiment.resolve(990, "2.5d", "T1C", 0, trainer_name="SynthTrainer_GDL")
    trainer = get_trainer_class("SynthTrainer_GDL")(experiment, num_epochs=1, residual_input="t1n",
                                                    final_validation=False)
    trainer.run_training()
    network, info, _ = load_trained_model(experiment.model_folder, 0)
    assert info["residual_input"] == "T1N" and network.channel == 1  # T1N central slice: 0 * 3 + 1
    x = torch.rand(1, 9, 16, 16)
    assert torch.allclose(network(x), network.network(x) + x[:, 1:2])
    with pytest.raises(ValueError, match="not one of the inputs"):
        get_trainer_class("SynthTrainer")(experiment, residual_input="T1C")


def test_unknown_option_is_an_error(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    experiment = Experiment.resolve(990, "3d_fullres", "T1C", 0)
    with pytest.raises(ValueError, match="does not take option"):
        get_trainer_class("SynthTrainer")(experiment, vgg_weights="x.pth")


def test_perceptual_without_weights_fails_before_training(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    monkeypatch.delenv("SYNTHUNET_VGG19_WEIGHTS", raising=False)
    experiment = Experiment.resolve(990, "2.5d", "T1C", 0)
    with pytest.raises(FileNotFoundError, match="--vgg_weights"):
        get_trainer_class("SynthTrainer_Perceptual")(experiment)


@pytest.mark.parametrize("arguments,message", [
    (["990", "3d_fullres", "FLAIR", "0"], "TARGET 'FLAIR' is not a channel of this dataset; channels are: T1N"),
    (["990", "3d_fullres", "T1C", "7"], "Fold 7 does not exist"),
    (["990", "3d_fullres", "T1C", "one"], "FOLD must be a fold number"),
    (["990", "3d_lowres", "T1C", "0"], "Configuration '3d_lowres' is not in synthUNetPlans.json; available: 2.5d"),
    (["990", "3d_fullres", "T1C", "0", "-p", "OtherPlans"], "OtherPlans.json does not exist"),
    (["990", "3d_fullres", "T1C", "0", "--inputs", "T1C", "T1N"], "cannot also be an input"),
    (["990", "3d_fullres", "T1C", "0", "-tr", "NoSuchTrainer"], "Unknown trainer 'NoSuchTrainer'"),
    (["991", "3d_fullres", "T1C", "0"], "No folder Dataset991_*"),
])
def test_cli_errors_are_clear(tmp_path, monkeypatch, capsys, arguments, message):
    from synthunet.training.cli import main

    prepare(tmp_path, monkeypatch)
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_missing_preprocessing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from synthunet.training.cli import main

    prepare(tmp_path, monkeypatch)
    for case in (tmp_path / "preprocessed" / DATASET / "synthUNetPlans_3d_fullres").glob("*.json"):
        case.unlink()
    assert main(["990", "3d_fullres", "T1C", "0"]) == 2
    error = capsys.readouterr().err
    assert "No preprocessed cases" in error and "synth_preprocess" in error
