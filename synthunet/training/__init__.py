"""Training: ``synth_train``, the :class:`SynthTrainer` loop, its recipes and splits (checkpoints and
``load_trained_model``: :mod:`synthunet.prediction.checkpoints`, re-exported here).

Public API::

    from synthunet.training import Experiment, SynthTrainer, TRAINERS, get_trainer_class, load_trained_model
    experiment = Experiment.resolve(501, "3d_fullres", "T1C", 0)
    SynthTrainer(experiment, device="cpu", num_epochs=2).run_training()
    network, model_info, plans = load_trained_model(experiment.model_folder, 0, "cpu")
"""
from synthunet.prediction.checkpoints import load_checkpoint, load_trained_model
from synthunet.training.experiment import Experiment, ExperimentError
from synthunet.training.splits import load_or_create_splits, make_splits
from synthunet.training.trainer import SynthTrainer
from synthunet.training.trainers import TRAINERS, get_trainer_class

__all__ = ["Experiment", "ExperimentError", "SynthTrainer", "TRAINERS", "get_trainer_class", "load_checkpoint",
           "load_or_create_splits", "load_trained_model", "make_splits"]
