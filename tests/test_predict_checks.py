"""synth_predict checks every case and the output folder before writing the first output (issue 17, item 4):
one error lists every problem and nothing is written; the temporary files of a killed run's outputs are removed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from synthunet.inference.cli import main as predict_main
from test_bad_input import assert_refused, damage, no_images, predict_setup  # noqa: F401 - a fixture
from test_predict_pipeline import SHAPE, brain_image, write_nifti


def error_line(stderr: str) -> str:
    """The whole message of a refused command: 'error: ...' up to the hint."""
    assert "Traceback" not in stderr, stderr
    return stderr.split("error: ", 1)[1].split("\nhint: ", 1)[0]


def test_every_problem_is_listed_before_the_first_output(predict_setup, capsys, tmp_path):
    """Five cases, four faults (the first case is fine): one error names them all, nothing is written."""
    _, inputs, output, argv = predict_setup
    for case, seed in (("c3", 3), ("c4", 4), ("c5", 5)):
        for channel in (0, 2, 3):
            write_nifti(inputs / f"{case}_{channel:04d}.nii.gz", brain_image(seed * 10 + channel))
    damage(inputs / "c2_0003.nii.gz", "truncated")  # the second case: the first output would already exist
    damage(inputs / "c3_0000.nii.gz", "nan")
    (inputs / "c4_0002.nii.gz").unlink()  # c4 misses T1C (the target) and T2W (an input)
    write_nifti(inputs / "c5_0002.nii.gz", np.zeros((SHAPE[0] + 1, *SHAPE[1:])))  # another grid
    (output / "c1_0001.nii.gz").mkdir(parents=True)  # an output name taken by a folder
    assert predict_main(argv) == 2
    message = error_line(capsys.readouterr().err)
    assert message.startswith("5 problems") and "nothing was written" in message, message
    for needle in (f"Case c2: {inputs / 'c2_0003.nii.gz'}: is truncated", f"Case c3: {inputs / 'c3_0000.nii.gz'}",
                   "NaN", "Case c4 misses T1C (to predict) and T2W", "Case c5: c5_0002.nii.gz does not lie on the grid",
                   f"Output file {output / 'c1_0001.nii.gz'} is taken by a folder"):
        assert needle in message, (needle, message)
    assert no_images(output)


def test_problems_are_found_in_worker_processes_too(predict_setup, capsys):
    _, inputs, output, argv = predict_setup
    damage(inputs / "c2_0000.nii.gz", "inf")
    argv[argv.index("-npp") + 1] = "1"
    assert_refused(predict_main(argv), capsys.readouterr().err, inputs / "c2_0000.nii.gz", "Inf")
    assert no_images(output)


@pytest.mark.parametrize("fault", ["output_is_a_file", "parent_is_a_file", "not_writable", "case_folder_is_a_file"])
def test_an_unwritable_output_is_refused_before_reading(predict_setup, capsys, monkeypatch, tmp_path, fault):
    _, inputs, output, argv = predict_setup
    if fault == "output_is_a_file":
        output.write_text("")
        named = output
    elif fault == "parent_is_a_file":
        (tmp_path / "file").write_text("")
        output = named = tmp_path / "file" / "out"
    elif fault == "not_writable":
        (tmp_path / "locked").mkdir()
        output, named = tmp_path / "locked" / "out", tmp_path / "locked"
        real_access = os.access  # root may write anywhere: deny this folder as chmod would for a user
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != named
                            and real_access(path, mode, **kw))
    else:  # --brats_subfolders writes OUT/{case}/{case}-t1c.nii.gz; OUT/{case} is a file
        from test_predict_pipeline import brats_input_folder
        inputs = brats_input_folder(tmp_path / "brats", {"BraTS-GLI-00001-000": ("t1n", "t2w", "t2f")})
        (output / "BraTS-GLI-00001-000").parent.mkdir(parents=True)
        (output / "BraTS-GLI-00001-000").write_text("")
        named = output / "BraTS-GLI-00001-000"
        argv = [*argv, "--brats_subfolders"]
    argv[argv.index("-i") + 1], argv[argv.index("-o") + 1] = str(inputs), str(output)
    phrase = {"not_writable": "is not writable",
              "parent_is_a_file": f"cannot be created: {tmp_path / 'file'} is a file"}
    code = predict_main(argv)
    assert_refused(code, capsys.readouterr().err, named, phrase.get(fault, "is a file, not a folder"))
    assert no_images(output if output.is_dir() else tmp_path / "nothing")


def test_stale_temporaries_of_the_outputs_are_removed(predict_setup, capsys):
    _, _, output, argv = predict_setup
    output.mkdir()
    own = [output / ".tmp_0123abcd_c1_0001.nii.gz", output / ".tmp_deadbeef_c2_0001.nii.gz"]
    foreign = [output / ".tmp_0123abcd_notes.txt", output / ".tmp_c1_0001.nii.gz", output / "c9_0001.nii.gz"]
    for path in own + foreign:
        path.write_bytes(b"left by a killed run")
    assert predict_main(argv) == 0, capsys.readouterr().err
    assert not any(path.exists() for path in own)
    assert all(path.exists() for path in foreign)  # only the command's own temporary files are removed
    assert (output / "c1_0001.nii.gz").is_file() and (output / "c2_0001.nii.gz").is_file()
