"""Typed plans (synthunet/plans.py): every plans file the planner writes round-trips, a malformed one is refused
with the key named, and the defaults are the ones the trainer uses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthunet.planning.experiment import plans_for_fingerprint
from synthunet.planning.timing import CpuSpeed
from synthunet.planning.training_plan import training_block
from synthunet.plans import ConfigurationPlan, Plans, PlansError, TrainingPlan, as_plans

FINGERPRINT = {"dataset_name": "Dataset997_Typed", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
               "label_values": [0, 1, 2, 3], "spacings": [[1.0, 1.0, 3.0]] * 6 + [[1.0, 1.0, 1.0]] * 4,
               "shapes_after_cropping": [[150 + i, 180, 140] for i in range(10)]}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("architecture", ["unet", "hrfcn", "dilated_fcn", "unet25d_brasyn", "rrdb"])
def test_every_planned_file_round_trips(device, architecture):
    plans = plans_for_fingerprint(FINGERPRINT, device=device, configurations=["3d_fullres", "2.5d", "3d_lowres"],
                                  cpu_speed=CpuSpeed(90.0, 30.0), architecture=architecture)
    written = json.loads(json.dumps(plans))  # as the file holds it
    typed = as_plans(written, "planned")
    assert json.loads(json.dumps(typed.to_dict())) == written
    assert typed.channels == ["T1N", "T1C", "T2W", "T2F"]
    for name, block in typed.configurations.items():
        assert block.check_trainable(name) is block
        assert list(block.patch_size) == written["configurations"][name]["patch_size"]


@pytest.mark.parametrize("name", ["plans_written_2026-12-04_cpu.json", "plans_written_2026-12-04_gpu.json"])
def test_files_written_before_typed_plans_load_and_round_trip_unchanged(name):
    # Dataset501's plans as the planner wrote them on 2026-12-04, before synthunet/plans.py existed
    written = json.loads((Path(__file__).parent / "data" / name).read_text())
    typed = as_plans(written, name)
    assert typed.to_dict() == written
    block = typed.configuration("3d_fullres")
    assert block.training.num_epochs == written["configurations"]["3d_fullres"]["training"]["num_epochs"]
    assert typed.configuration("2.5d").slicing_axes == (0, 1, 2)


def test_the_planner_writes_the_typed_training_defaults():
    assert training_block("cuda") == TrainingPlan(num_epochs=1000, iterations_per_epoch=250,
                                                  val_iterations_per_epoch=50).to_dict()
    cpu = TrainingPlan.from_dict(training_block("cpu", step_time_s=0.2, short_steps=True))
    assert (cpu.initial_lr, cpu.oversample_tumour, cpu.iterations_per_epoch) == (3e-3, 0.66, 50)


def _minimal() -> dict:
    return {"plans_name": "P", "channel_names": {"0": "T1N", "1": "T1C"}, "normalization": None,
            "configurations": {"3d_fullres": {"dimension": 3, "spacing": [1, 1, 1], "patch_size": [16, 16, 16],
                                              "batch_size": 2, "architecture": {"name": "unet", "kwargs": {}}}}}


def test_optional_keys_take_the_one_set_of_defaults():
    block = as_plans(_minimal()).configuration("3d_fullres")
    assert block.training == TrainingPlan() and block.training.num_epochs == 50 and block.training.grad_clip == 12.0
    assert block.data_identifier == "P_3d_fullres"  # the preprocessed folder of a block that names none
    assert block.resampling.order_data == 3 and block.resampling.separate_z_anisotropy_threshold == 3.0
    assert block.architecture.prior is None and block.inference_batch_size is None


@pytest.mark.parametrize("change,named", [
    (lambda p: p.pop("channel_names"), "lacks 'channel_names'"),
    (lambda p: p.update(extra=1), "unknown key(s) 'extra'"),
    (lambda p: p["configurations"]["3d_fullres"].update(batch_size="2"), "configurations.3d_fullres.batch_size must "
                                                                          "be an integer"),
    (lambda p: p["configurations"]["3d_fullres"].update(patch_size=[16, 16]), "configurations.3d_fullres.patch_size "
                                                                              "must be a list of 3 values"),
    (lambda p: p["configurations"]["3d_fullres"].update(dimension=4), "configurations.3d_fullres.dimension must be"),
    (lambda p: p["configurations"]["3d_fullres"]["architecture"].pop("name"), "architecture lacks 'name'"),
    (lambda p: p["configurations"]["3d_fullres"].update(training={"initial_lr": "fast"}),
     "training.initial_lr must be a number"),
    (lambda p: p["configurations"]["3d_fullres"].update(training={"epochs": 5}), "unknown key(s) 'epochs'"),
    (lambda p: p["configurations"]["3d_fullres"].update(training={"mixed_precision": 1}),
     "mixed_precision must be true or false"),
    (lambda p: p["configurations"]["3d_fullres"].update(resampling={"order_data": 1.5}),
     "resampling.order_data must be an integer"),
    (lambda p: p["channel_names"].update(first="T2W"), "channel_names keys must be channel indices"),
])
def test_a_malformed_plans_file_names_the_key(change, named):
    plans = _minimal()
    change(plans)
    with pytest.raises(PlansError) as error:
        as_plans(plans, "synthUNetPlans.json")
    assert named in str(error.value) and str(error.value).startswith("synthUNetPlans.json")


def test_a_preprocessing_only_block_loads_but_is_not_trainable():
    plans = _minimal()
    plans["configurations"]["2.5d"] = {"dimension": 2, "spacing": [1.0, 1.0, 1.0]}
    block = as_plans(plans).configuration("2.5d")
    with pytest.raises(PlansError, match="lacks 'patch_size', 'architecture', 'slicing_axes', 'batch_size'"):
        block.check_trainable("configurations.2.5d")
    with pytest.raises(PlansError, match="'3d_lowres' is not in plans 'P' \\(it has 2.5d, 3d_fullres\\)"):
        as_plans(plans).configuration("3d_lowres")


def test_training_reads_a_malformed_block_as_an_error_naming_the_file(tmp_path, monkeypatch):
    from synthunet.training.experiment import Experiment
    from test_training_fixtures import prepare, tiny_plans

    plans = tiny_plans()
    plans["configurations"]["3d_fullres"]["training"]["num_epochs"] = "ten"
    prepare(tmp_path, monkeypatch, plans=plans)
    with pytest.raises(PlansError, match="synthUNetPlans.json: configurations.3d_fullres.training.num_epochs must be "
                                         "an integer"):
        Experiment.resolve(990, "3d_fullres", "T1C", 0)


def test_typed_plans_are_immutable_and_compare_by_value():
    first, second = as_plans(_minimal()), as_plans(_minimal())
    assert first == second and isinstance(first, Plans)
    assert isinstance(first.configuration("3d_fullres"), ConfigurationPlan)
    with pytest.raises(AttributeError):
        first.configuration("3d_fullres").batch_size = 4
