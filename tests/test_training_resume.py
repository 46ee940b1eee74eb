"""--c resumes exactly: a run interrupted mid-epoch and continued ends with the same weights as an
uninterrupted one (0 data workers, seeded, CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthunet.prediction.checkpoints import CHECKPOINT_LATEST, CHECKPOINT_PREVIOUS, load_checkpoint
from synthunet.training import Experiment, get_trainer_class
from test_training_fixtures import Interrupted, prepare, run_training, seed_everything, single_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


def _train(name: str, results, monkeypatch, interrupt_at: int | None = None, resume: bool = False):
    monkeypatch.setenv("synthUNet_results", str(results))
    seed_everything(123)
    experiment = Experiment.resolve(990, "3d_fullres", "T1C", 0, trainer_name=name)
    trainer = get_trainer_class(name)(experiment, device="cpu", num_epochs=3, final_validation=False)
    run_training(trainer, interrupt_at, resume)
    return experiment.output_folder


@pytest.mark.parametrize("name", ["SynthTrainer", "SynthTrainer_GAN", "SynthTrainer_SRGANNoVGG"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, monkeypatch, name):
    prepare(tmp_path, monkeypatch)
    straight = _train(name, tmp_path / "results_a", monkeypatch)
    with pytest.raises(Interrupted):  # dies in the second iteration of epoch 1 (after checkpoint_latest of epoch 0)
        _train(name, tmp_path / "results_b", monkeypatch, interrupt_at=4)
    assert load_checkpoint(tmp_path / "results_b" / straight.relative_to(tmp_path / "results_a")
                           / "checkpoint_latest.pth")["epoch"] == 1
    resumed = _train(name, tmp_path / "results_b", monkeypatch, resume=True)
    a = load_checkpoint(straight / "checkpoint_final.pth")
    b = load_checkpoint(resumed / "checkpoint_final.pth")
    assert a["epoch"] == b["epoch"] == 3
    # SRGAN: two stages (the discriminator joins in epoch 2) and an EMA of the weights, which must resume too
    extra = {"SynthTrainer": [], "SynthTrainer_GAN": ["discriminator_weights"],
             "SynthTrainer_SRGANNoVGG": ["discriminator_weights", "ema_weights"]}[name]
    for key in ("network_weights", *extra):
        for parameter in a[key]:
            assert torch.equal(a[key][parameter], b[key][parameter]), (key, parameter)
    timing = {"epoch_time_s", "data_wait_fraction"}
    # assert_equal: NaN equals NaN (the adversarial parts of the log are NaN in SRGAN's L1-only stage)
    np.testing.assert_equal({k: v for k, v in a["logging"].items() if k not in timing},
                            {k: v for k, v in b["logging"].items() if k not in timing})
    log = (resumed / "training_log.txt").read_text()
    assert "resumed from checkpoint_latest.pth at epoch 1" in log


def test_resume_keeps_the_epochs_it_was_started_with(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)  # the plans say 2 epochs
    experiment = Experiment.resolve(990, "2.5d", "T1C", 0)
    get_trainer_class("SynthTrainer")(experiment, num_epochs=1, final_validation=False).run_training()
    trainer = get_trainer_class("SynthTrainer")(experiment, final_validation=False)
    trainer.run_training(continue_training=True)
    assert trainer.num_epochs == 1 and load_checkpoint(experiment.output_folder / "checkpoint_final.pth")["epoch"] == 1
    assert "epoch 1:" not in (experiment.output_folder / "training_log.txt").read_text()


def test_resume_falls_back_to_the_previous_checkpoint(tmp_path, monkeypatch):
    """A damaged checkpoint_latest: --c resumes from checkpoint_latest_previous (with a warning), not from scratch."""
    prepare(tmp_path, monkeypatch)
    experiment = Experiment.resolve(990, "3d_fullres", "T1C", 0)
    get_trainer_class("SynthTrainer")(experiment, device="cpu", num_epochs=2, final_validation=False).run_training()
    folder = experiment.output_folder
    assert load_checkpoint(folder / CHECKPOINT_LATEST)["epoch"] == 2
    assert load_checkpoint(folder / CHECKPOINT_PREVIOUS)["epoch"] == 1  # rotated on save
    stale = folder / ".tmp_0123abcd_checkpoint_latest.pth"
    stale.write_bytes(b"half a checkpoint of a killed run")
    latest = folder / CHECKPOINT_LATEST
    latest.write_bytes(latest.read_bytes()[:1000])  # damaged
    trainer = get_trainer_class("SynthTrainer")(experiment, device="cpu", num_epochs=2, final_validation=False)
    trainer.run_training(continue_training=True)
    log = (folder / "training_log.txt").read_text()
    assert f"WARNING: cannot resume from {CHECKPOINT_LATEST}: Checkpoint {latest}" in log
    assert f"resumed from {CHECKPOINT_PREVIOUS} at epoch 1" in log
    assert load_checkpoint(latest)["epoch"] == 2 and not stale.exists()
    latest_weights, final_weights = (load_checkpoint(folder / name)["network_weights"]
                                     for name in (CHECKPOINT_LATEST, "checkpoint_final.pth"))
    assert all(torch.equal(latest_weights[key], final_weights[key]) for key in latest_weights)
