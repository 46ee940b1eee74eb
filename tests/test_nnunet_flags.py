"""nnU-Net v2 flag spellings on the synth_* commands, the -pl planner registry and the environment helper.

Parsers only: no data, no torch work. documentation/for_nnunet_users.md is the table these tests follow.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from synthunet import env
from synthunet.evaluation.cli import build_accumulate_parser, build_evaluate_parser
from synthunet.fingerprint.cli import build_parser as fingerprint_parser
from synthunet.inference.cli import build_parser as predict_parser
from synthunet.inference.ensemble_folders import build_parser as ensemble_parser
from synthunet.inference.find_best_configuration import build_parser as find_best_parser
from synthunet.inference.segment_cli import build_parser as segment_parser
from synthunet.model_sharing.cli import build_export_parser
from synthunet.planning.cli import build_parser as plan_parser
from synthunet.planning.cli import plans_name_from_args, resolve_planner_args
from synthunet.planning.experiment import plans_for_fingerprint
from synthunet.planning.plan_and_preprocess import build_parser as plan_and_preprocess_parser
from synthunet.planning.plan_and_preprocess import main as plan_and_preprocess_main
from synthunet.planning.planner import (DEFAULT_PLANNER, PLANNERS, DefaultPlanner, UnknownPlannerError, get_planner,
                                        register_planner)
from synthunet.preprocessing.cli import build_parser as preprocess_parser
from synthunet.training.cli import build_parser as train_parser

DOCUMENT = Path(__file__).resolve().parents[1] / "documentation" / "for_nnunet_users.md"


@register_planner
class FlagTestPlanner(DefaultPlanner):
    """A registered subclass: plans nothing but a marker (so that dispatch is visible)."""

    def plan_configurations(self, fingerprint, budget, *args, **kwargs) -> dict:
        return {"marker": {"planner": type(self).__name__}}


#: command -> (parser builder, the required arguments every case adds)
COMMANDS = {
    "synth_predict": (predict_parser, ["-i", "in", "-o", "out", "-d", "501"]),
    "synth_segment": (segment_parser, ["-i", "in", "-o", "out", "-d", "501"]),
    "synth_train": (train_parser, ["501", "3d_fullres", "T1C", "0"]),
    "synth_plan_experiment": (plan_parser, ["-d", "501"]),
    "synth_plan_and_preprocess": (plan_and_preprocess_parser, ["-d", "501"]),
    "synth_preprocess": (preprocess_parser, ["-d", "501"]),
    "synth_extract_fingerprint": (fingerprint_parser, ["-d", "501"]),
    "synth_ensemble": (ensemble_parser, ["-i", "a", "b", "-o", "out"]),
    "synth_find_best_configuration": (find_best_parser, ["-d", "501", "-t", "T1C"]),
    "synth_export_model_to_zip": (build_export_parser, ["-d", "501", "-t", "T1C", "-o", "model.zip"]),
    "synth_accumulate_crossval": (build_accumulate_parser, ["-d", "501", "-c", "3d_fullres", "--target", "T1C"]),
    "synth_evaluate": (build_evaluate_parser, ["-ref", "ref", "-pred", "pred", "-o", "out"]),
}

#: (command, nnU-Net spelling, synthUNet spelling): both must give the same namespace. An empty synthUNet
#: spelling means "accepted, changes nothing" (the namespace equals that of the required arguments alone).
ALIASES = [
    ("synth_predict", ["-device", "cuda"], ["--device", "cuda"]),
    ("synth_predict", ["-chk", "checkpoint_best.pth"], ["--checkpoint", "checkpoint_best.pth"]),
    ("synth_predict", ["-step_size", "0.25"], ["--step_size", "0.25"]),
    ("synth_predict", ["-npp", "3"], ["--num_processes_preprocessing", "3"]),
    ("synth_predict", ["-nps", "3"], ["--num_processes_export", "3"]),
    ("synth_predict", ["-num_parts", "2", "-part_id", "1"], ["--num_parts", "2", "--part_id", "1"]),
    ("synth_predict", ["-p", "P"], ["--plans", "P"]),
    ("synth_predict", ["--plans_name", "P"], ["--plans", "P"]),
    ("synth_predict", ["-tr", "T"], ["--trainer", "T"]),
    ("synth_predict", ["-c", "2.5d"], ["--configuration", "2.5d"]),
    ("synth_predict", ["-f", "0", "1"], ["--folds", "0", "1"]),
    ("synth_predict", ["-m", "folder"], ["--model_folders", "folder"]),
    ("synth_predict", ["--disable_tta"], ["--disable_tta"]),
    ("synth_predict", ["--continue_prediction"], ["--continue_prediction"]),
    ("synth_predict", ["--verbose"], ["--verbose"]),
    ("synth_predict", ["--verbose", "--disable_progress_bar"], []),
    ("synth_segment", ["-device", "cpu"], ["--device", "cpu"]),
    ("synth_segment", ["-chk", "checkpoint_best.pth"], ["--checkpoint", "checkpoint_best.pth"]),
    ("synth_segment", ["-step_size", "0.25"], ["--step_size", "0.25"]),
    ("synth_segment", ["-npp", "3"], ["--num_processes_preprocessing", "3"]),
    ("synth_segment", ["-nps", "3"], ["--num_processes_export", "3"]),
    ("synth_segment", ["-p", "P"], ["--plans", "P"]),
    ("synth_segment", ["--plans_name", "P"], ["--plans", "P"]),
    ("synth_segment", ["-tr", "T"], ["--trainer", "T"]),
    ("synth_segment", ["-f", "0"], ["--folds", "0"]),
    ("synth_segment", ["--disable_progress_bar"], ["--quiet"]),
    ("synth_segment", ["--quiet", "--verbose"], []),
    ("synth_train", ["-device", "cpu"], ["--device", "cpu"]),
    ("synth_train", ["-num_gpus", "2"], ["--num_gpus", "2"]),
    ("synth_train", ["--val"], ["--val_only"]),
    ("synth_train", ["--val", "--val_best"], ["--val_only", "--val_best"]),
    ("synth_train", ["--c"], ["--c"]),
    ("synth_train", ["-tr", "T"], ["--trainer", "T"]),
    ("synth_train", ["-p", "P"], ["--plans", "P"]),
    ("synth_train", ["--plans_name", "P"], ["--plans", "P"]),
    ("synth_train", ["--npz"], []),
    ("synth_train", ["--use_compressed"], []),
    ("synth_plan_experiment", ["-pl", "FlagTestPlanner"], ["--planner", "FlagTestPlanner"]),
    ("synth_plan_experiment", ["-p", "P"], ["--plans_name", "P"]),
    ("synth_plan_experiment", ["--plans", "P"], ["--plans_name", "P"]),
    ("synth_plan_experiment", ["-overwrite_plans_name", "P"], ["--plans_name", "P"]),
    ("synth_plan_experiment", ["-gpu_memory_target", "24"], ["--gpu_memory_gb", "24"]),
    ("synth_plan_experiment", ["-c", "3d_fullres"], ["--configurations", "3d_fullres"]),
    ("synth_plan_and_preprocess", ["-pl", "FlagTestPlanner"], ["--planner", "FlagTestPlanner"]),
    ("synth_plan_and_preprocess", ["-p", "P"], ["--plans_name", "P"]),
    ("synth_plan_and_preprocess", ["-overwrite_plans_name", "P"], ["--plans_name", "P"]),
    ("synth_plan_and_preprocess", ["-gpu_memory_target", "24"], ["--gpu_memory_gb", "24"]),
    ("synth_plan_and_preprocess", ["--clean"], ["--overwrite"]),
    ("synth_plan_and_preprocess", ["-np", "4"], ["--num_processes", "4"]),
    ("synth_plan_and_preprocess", ["--verify_dataset_integrity"], ["--verify_dataset_integrity"]),
    ("synth_plan_and_preprocess", ["--verbose"], []),
    ("synth_preprocess", ["-plans_name", "P"], ["--plans_name", "P"]),
    ("synth_preprocess", ["-p", "P"], ["--plans_name", "P"]),
    ("synth_preprocess", ["--plans", "P"], ["--plans_name", "P"]),
    ("synth_preprocess", ["-c", "3d_fullres"], ["--configurations", "3d_fullres"]),
    ("synth_preprocess", ["-np", "4"], ["--num_processes", "4"]),
    ("synth_preprocess", ["--verbose"], []),
    ("synth_extract_fingerprint", ["--clean"], ["--overwrite"]),
    ("synth_extract_fingerprint", ["-np", "4"], ["--num_processes", "4"]),
    ("synth_extract_fingerprint", ["--verify_dataset_integrity"], ["--verify_dataset_integrity"]),
    ("synth_extract_fingerprint", ["--verbose"], []),
    ("synth_find_best_configuration", ["-p", "P"], ["--plans", "P"]),
    ("synth_find_best_configuration", ["--plans_name", "P"], ["--plans", "P"]),
    ("synth_find_best_configuration", ["-tr", "T"], ["--trainer", "T"]),
    ("synth_find_best_configuration", ["-c", "3d_fullres", "2.5d"], ["--configurations", "3d_fullres", "2.5d"]),
    ("synth_find_best_configuration", ["-f", "0", "1"], ["--folds", "0", "1"]),
    ("synth_export_model_to_zip", ["-chk", "checkpoint_best.pth", "checkpoint_final.pth"],
     ["--checkpoint", "checkpoint_best.pth", "checkpoint_final.pth"]),
    ("synth_export_model_to_zip", ["-p", "P"], ["--plans", "P"]),
    ("synth_export_model_to_zip", ["--plans_name", "P"], ["--plans", "P"]),
    ("synth_export_model_to_zip", ["-tr", "T"], ["--trainer", "T"]),
    ("synth_export_model_to_zip", ["-f", "0"], ["--folds", "0"]),
    ("synth_accumulate_crossval", ["-p", "P"], ["--plans", "P"]),
    ("synth_accumulate_crossval", ["--plans_name", "P"], ["--plans", "P"]),
    ("synth_accumulate_crossval", ["-tr", "T"], ["--trainer", "T"]),
    ("synth_accumulate_crossval", ["-f", "0", "1"], ["--folds", "0", "1"]),
    ("synth_evaluate", ["-djfile", "dataset.json"], ["--dataset_json", "dataset.json"]),
    ("synth_evaluate", ["--chill"], ["--allow_missing"]),
    ("synth_evaluate", ["-np", "2"], ["--num_processes", "2"]),
]

#: (command, nnU-Net flag with a value if it takes one): options synthUNet does not have; they stop with the reason
REFUSED = [
    ("synth_predict", ["--save_probabilities"]),
    ("synth_predict", ["-prev_stage_predictions", "folder"]),
    ("synth_segment", ["--save_probabilities"]),
    ("synth_segment", ["-prev_stage_predictions", "folder"]),
    ("synth_segment", ["-num_parts", "2"]),
    ("synth_segment", ["-part_id", "1"]),
    ("synth_train", ["-pretrained_weights", "weights.pth"]),
    ("synth_train", ["--disable_checkpointing"]),
    ("synth_plan_experiment", ["-preprocessor_name", "DefaultPreprocessor"]),
    ("synth_plan_experiment", ["-overwrite_target_spacing", "1", "1", "1"]),
    ("synth_plan_and_preprocess", ["-fpe", "DatasetFingerprintExtractor"]),
    ("synth_plan_and_preprocess", ["-npfp", "4"]),
    ("synth_plan_and_preprocess", ["--no_pp"]),
    ("synth_plan_and_preprocess", ["-preprocessor_name", "DefaultPreprocessor"]),
    ("synth_plan_and_preprocess", ["-overwrite_target_spacing", "1", "1", "1"]),
    ("synth_extract_fingerprint", ["-fpe", "DatasetFingerprintExtractor"]),
    ("synth_ensemble", ["-np", "4"]),
    ("synth_ensemble", ["--save_npz"]),
    ("synth_find_best_configuration", ["--disable_ensembling"]),
    ("synth_find_best_configuration", ["--no_overwrite"]),
    ("synth_export_model_to_zip", ["--not_strict"]),
    ("synth_export_model_to_zip", ["--exp_cv_preds"]),
    ("synth_evaluate", ["-pfile", "plans.json"]),
    ("synth_evaluate", ["-il", "1"]),
]


def parse(command: str, argv: list[str]) -> dict:
    builder, required = COMMANDS[command]
    return vars(builder().parse_args(required + argv))


def case_id(case) -> str:
    return f"{case[0]}:{' '.join(case[1])}"


@pytest.mark.parametrize("command, nnunet, synth", ALIASES, ids=[case_id(c) for c in ALIASES])
def test_nnunet_spelling_gives_the_same_namespace(command, nnunet, synth):
    expected = parse(command, synth)
    assert parse(command, nnunet) == expected
    if synth:  # the flag does something: the namespace differs from the defaults'
        assert expected != parse(command, [])


def test_device_and_chk_are_not_split_into_short_flags():
    args = parse("synth_predict", ["-device", "cuda", "-chk", "checkpoint_best.pth", "-step_size", "0.5"])
    assert args["device"] == "cuda" and args["checkpoint"] == "checkpoint_best.pth" and args["step_size"] == 0.5
    assert args["dataset"] == "501" and args["configuration"] == "3d_fullres"  # not -d evice / -c hk
    args = parse("synth_train", ["-device", "cpu", "-num_gpus", "2"])
    assert args["device"] == "cpu" and args["num_gpus"] == 2 and args["dataset"] == "501"
    args = parse("synth_plan_and_preprocess", ["-pl", "DefaultPlanner", "-p", "P"])
    assert args["planner"] == "DefaultPlanner" and args["plans_name"] == "P"


@pytest.mark.parametrize("command, argv", REFUSED, ids=[case_id(c) for c in REFUSED])
def test_nnunet_flag_without_counterpart_stops_with_the_reason(command, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(command, argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {argv[0]}: an nnU-Net option that {command} does not have: " in error
    assert "for_nnunet_users.md" in error


def test_accepted_and_refused_flags_are_in_help_only_when_they_parse():
    help_text = train_parser().format_help()
    assert "--npz" in help_text and "accepted for nnU-Net users" in help_text
    assert "-pretrained_weights" not in help_text


def test_every_flag_is_in_the_document():
    text = DOCUMENT.read_text()
    flags = {a for _, nnunet, _ in ALIASES for a in nnunet if a.startswith("-")}
    flags |= {argv[0] for _, argv in REFUSED}
    missing = sorted(flag for flag in flags if f"`{flag}" not in text)
    assert not missing, f"not in {DOCUMENT.name}: {missing}"
    assert all(f"`{command}`" in text for command in COMMANDS)


def test_val_best_needs_val_only():
    from synthunet.errors import SynthUNetError
    from synthunet.training.cli import run

    args = train_parser().parse_args(["501", "3d_fullres", "T1C", "0", "--val_best"])
    with pytest.raises(SynthUNetError, match="--val_best chooses the checkpoint of --val_only"):
        run(args)


# -pl: the planner registry ----------------------------------------------------------------------------------------

def test_planner_registry_knows_the_default_and_registered_subclasses():
    assert DEFAULT_PLANNER == "DefaultPlanner" and PLANNERS["DefaultPlanner"] is DefaultPlanner
    assert type(get_planner()) is DefaultPlanner and type(get_planner("DefaultPlanner")) is DefaultPlanner
    assert type(get_planner("FlagTestPlanner")) is FlagTestPlanner
    assert type(get_planner(FlagTestPlanner)) is FlagTestPlanner
    with pytest.raises(TypeError, match="subclass DefaultPlanner"):
        register_planner(dict)


def test_unknown_planner_lists_the_known_ones():
    with pytest.raises(UnknownPlannerError) as error:
        get_planner("nnUNetPlannerResEncM")
    assert "Unknown planner 'nnUNetPlannerResEncM'" in str(error.value)
    assert "DefaultPlanner" in str(error.value) and "FlagTestPlanner" in str(error.value)


def test_unknown_planner_on_the_command_line_stops_before_any_step(capsys, tmp_path, monkeypatch):
    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))  # empty: any step would fail differently
    assert plan_and_preprocess_main(["-d", "501", "-pl", "nnUNetPlannerResEncM"]) == 2
    error = capsys.readouterr().err
    assert "error: Unknown planner 'nnUNetPlannerResEncM'; known planners: DefaultPlanner" in error
    assert "hint:" in error and "-p" in error


def test_old_pl_plans_name_still_works_with_a_warning():
    args = plan_parser().parse_args(["-d", "501", "-pl", "myPlans"])
    with pytest.warns(FutureWarning, match=r"-pl now chooses the planner class.*use -p myPlans"):
        assert plans_name_from_args(args) == "myPlans"
    assert args.planner == DEFAULT_PLANNER and args.plans_name == "myPlans"
    resolve_planner_args(args)  # idempotent: no second warning, nothing changes
    assert args.plans_name == "myPlans"


@pytest.mark.parametrize("argv", [["-pl", "SomePlanner"], ["-p", "P", "-pl", "myPlans"]])
def test_pl_is_not_read_as_plans_name_when_it_cannot_be_meant_so(argv):
    args = plan_parser().parse_args(["-d", "501", *argv])
    with pytest.raises(UnknownPlannerError):
        resolve_planner_args(args)


def test_plans_use_the_chosen_planner_and_record_it():
    fingerprint = {"dataset_name": "Dataset501_X", "channel_names": {"0": "T1N"}, "label_values": []}
    plans = plans_for_fingerprint(fingerprint, device="cuda", planner="FlagTestPlanner")
    assert plans["configurations"] == {"marker": {"planner": "FlagTestPlanner"}}
    assert plans["planned_for"]["planner"] == "FlagTestPlanner"


# environment knobs -----------------------------------------------------------------------------------------------

@pytest.fixture
def clean_environment(monkeypatch):
    for new, old in env.DEPRECATED_NAMES.items():
        for name in (new, *old):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_env_old_name_is_read_with_a_warning_naming_the_new_one(clean_environment):
    clean_environment.setenv("SYNTH_NUM_WORKERS", "3")
    with pytest.warns(FutureWarning, match="SYNTH_NUM_WORKERS is deprecated; set SYNTHUNET_NUM_WORKERS=3"):
        assert env.get(env.NUM_WORKERS) == "3"
    from synthunet.utilities.threads import default_num_workers
    with pytest.warns(FutureWarning, match="SYNTHUNET_NUM_WORKERS"):
        assert default_num_workers() == 3


def test_env_new_name_wins_when_both_are_set(clean_environment):
    clean_environment.setenv("SYNTH_NUM_THREADS", "3")
    clean_environment.setenv("SYNTHUNET_NUM_THREADS", "1")
    with pytest.warns(FutureWarning, match="SYNTH_NUM_THREADS is deprecated and ignored because SYNTHUNET_NUM_THREADS"):
        assert env.get(env.NUM_THREADS) == "1"


def test_env_unset_or_empty_gives_the_default(clean_environment, recwarn):
    assert env.get(env.NUM_WORKERS) is None and env.get(env.NUM_WORKERS, "x") == "x"
    clean_environment.setenv("SYNTHUNET_NUM_WORKERS", "")
    assert env.get(env.NUM_WORKERS, "x") == "x"
    clean_environment.setenv("SYNTHUNET_NUM_WORKERS", "2")
    assert env.get(env.NUM_WORKERS) == "2"
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_env_knobs_share_one_prefix():
    knobs = [env.NUM_THREADS, env.NUM_WORKERS, env.VGG19_WEIGHTS, env.MAX_IMAGE_VOXELS, env.DEBUG]
    assert all(name.startswith("SYNTHUNET_") for name in knobs)
    assert set(env.DEPRECATED_NAMES) <= set(knobs)


def test_no_module_reads_os_environ_directly():
    """Every read goes through synthunet.env (writes, and copying the environment for a child, are fine)."""
    import re

    root = Path(env.__file__).resolve().parent
    reads = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=)")
    offenders = [f"{path.relative_to(root)}:{number}" for path in sorted(root.rglob("*.py")) if path.name != "env.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if reads.search(line)]
    assert not offenders, offenders

