"""synth_export_model_to_zip / synth_install_pretrained_model_from_zip: round trip, and refused archives."""
from __future__ import annotations

import hashlib
import json
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from synthunet.inference.cli import main as predict_main
from synthunet.inference.testing import write_model_folder
from synthunet.model_sharing import MANIFEST_NAME, ModelArchiveError, install_model_from_zip, read_manifest
from synthunet.model_sharing.cli import export_main, install_main

from test_predict_pipeline import raw_input_folder

DATASET = "Dataset999_Fake"
MODEL = "SynthTrainer__synthUNetPlans__3d_fullres__T1C"
PREFIX = f"{DATASET}/{MODEL}/"


def set_paths(monkeypatch, tmp_path: Path, results: Path) -> None:
    """Empty raw and preprocessed folders: prediction must need only the results folder."""
    for name in ("raw", "preprocessed"):
        (tmp_path / name).mkdir(exist_ok=True)
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("synthUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("synthUNet_results", str(results))


def predict(inputs: Path, output: Path, *model: str) -> None:
    code = predict_main(["-i", str(inputs), "-o", str(output), *model, "--device", "cpu", "--disable_tta",
                         "-npp", "0", "-nps", "0"])
    assert code == 0


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def exported(tmp_path, monkeypatch) -> Path:
    """A model zip (folds 0 and 1, randomly initialised checkpoints) exported from results_a."""
    results = tmp_path / "results_a"
    write_model_folder(results / DATASET, "T1C", folds=(0, 1, 2))
    (results / DATASET / MODEL / "fold_0" / "training_log.txt").write_text("not exported\n")
    set_paths(monkeypatch, tmp_path, results)
    zip_file = tmp_path / "share" / "model.zip"
    assert export_main(["-d", "999", "-c", "3d_fullres", "-t", "T1C", "-f", "0", "1", "-o", str(zip_file)]) == 0
    return zip_file


def test_round_trip_predictions_are_byte_identical(tmp_path, monkeypatch, exported, capsys):
    with zipfile.ZipFile(exported) as archive:
        names = sorted(archive.namelist())
    assert names == sorted([MANIFEST_NAME] + [PREFIX + n for n in (
        "plans.json", "dataset.json", "model_info.json", "fold_0/checkpoint_final.pth", "fold_1/checkpoint_final.pth")])
    manifest = read_manifest(exported)
    assert manifest["folds"] == [0, 1] and manifest["checkpoints"] == ["checkpoint_final.pth"]
    original = tmp_path / "results_a" / DATASET / MODEL
    for name, entry in manifest["files"].items():
        path = original / name[len(PREFIX):]
        assert entry == {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    inputs = raw_input_folder(tmp_path / "in", cases=("c1", "c2"))
    predict(inputs, tmp_path / "out_original", "-d", "999", "-f", "0", "1")

    results_b = tmp_path / "results_b"
    set_paths(monkeypatch, tmp_path, results_b)
    assert install_main([str(exported)]) == 0
    installed = results_b / DATASET / MODEL
    assert f"Installed {installed}" in capsys.readouterr().out
    assert tree(results_b) == sorted([DATASET, f"{DATASET}/{MODEL}"] + [f"{DATASET}/{MODEL}/{n}" for n in (
        "plans.json", "dataset.json", "model_info.json", "fold_0", "fold_1", "fold_0/checkpoint_final.pth",
        "fold_1/checkpoint_final.pth")])
    for name in manifest["files"]:
        assert (installed / name[len(PREFIX):]).read_bytes() == (original / name[len(PREFIX):]).read_bytes()

    predict(inputs, tmp_path / "out_m", "-m", str(installed))
    predict(inputs, tmp_path / "out_d", "-d", "999")
    expected = folder_bytes(tmp_path / "out_original")
    assert sorted(expected) == ["c1_0001.nii.gz", "c2_0001.nii.gz"]
    assert folder_bytes(tmp_path / "out_m") == expected
    assert folder_bytes(tmp_path / "out_d") == expected
    assert not list((tmp_path / "raw").iterdir()) and not list((tmp_path / "preprocessed").iterdir())

    # installing again: refused unless --overwrite, which replaces the folder in one rename
    assert install_main([str(exported)]) == 2
    assert "already exists" in capsys.readouterr().err
    (installed / "fold_0" / "stale.txt").write_text("x")
    assert install_main([str(exported), "--overwrite"]) == 0
    assert not (installed / "fold_0" / "stale.txt").exists()
    assert [p.name for p in (results_b / DATASET).iterdir()] == [MODEL]


def test_export_errors_name_the_problem(tmp_path, monkeypatch, exported, capsys):
    assert export_main(["-d", "999", "-t", "T2W", "-o", str(tmp_path / "x.zip")]) == 2
    assert "No model folder SynthTrainer__synthUNetPlans__3d_fullres__T2W" in capsys.readouterr().err
    assert export_main(["-d", "999", "-t", "T1C", "-f", "4", "-o", str(tmp_path / "x.zip")]) == 2
    assert "no checkpoint_final.pth for fold(s) 4" in capsys.readouterr().err
    assert export_main(["-d", "999", "-t", "T1C", "--chk", "checkpoint_best.pth", "-o", str(tmp_path / "x.zip")]) == 2
    assert "checkpoint_best.pth" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".tmp_*"))


# ---- refused archives -------------------------------------------------------------------------------------------
def rewrite(source: Path, target: Path, extra: dict[str, bytes] | None = None, symlinks: dict[str, str] | None = None,
            manifest_edit=None, list_extra: bool = True, drop: tuple[str, ...] = (), duplicate: str | None = None
            ) -> Path:
    """Copy a model zip by hand with zipfile, adding members (listed in the manifest with their true sha256
    unless ``list_extra`` is False), symlink members, or an edited manifest."""
    extra, symlinks = dict(extra or {}), dict(symlinks or {})
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members.pop(MANIFEST_NAME))
    for name in drop:
        members.pop(name)
    added = {**extra, **{name: link.encode() for name, link in symlinks.items()}}
    if list_extra:
        for name, data in added.items():
            manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if manifest_edit:
        manifest_edit(manifest)
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name"
        archive.writestr(MANIFEST_NAME, json.dumps(manifest))
        for name, data in {**members, **extra}.items():
            archive.writestr(name, data)
        for name, link in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, link)
        if duplicate:
            archive.writestr(duplicate, members[duplicate])
    return target


def corrupt_checksum(manifest: dict) -> None:
    entry = manifest["files"][PREFIX + "fold_1/checkpoint_final.pth"]  # the last member: others are extracted first
    entry["sha256"] = "0" * 64


REFUSALS = {
    "absolute_path": ({"extra": {"/tmp/synthunet_evil.txt": b"x"}},
                      r"member '/tmp/synthunet_evil.txt' has an absolute"),
    "dot_dot": ({"extra": {"../x": b"x"}}, r"member '\.\./x' has a '\.\.' component"),
    "dot_dot_inside": ({"extra": {PREFIX + "fold_0/../../../x": b"x"}}, r"'\.\.' component"),
    "symlink": ({"symlinks": {PREFIX + "fold_0/link": "/etc/passwd"}},
                rf"member '{PREFIX}fold_0/link' is a symbolic link"),
    "checksum_mismatch": ({"manifest_edit": corrupt_checksum},
                          rf"member '{PREFIX}fold_1/checkpoint_final.pth' does not match its sha256"),
    "not_in_manifest": ({"extra": {PREFIX + "fold_0/extra.txt": b"x"}, "list_extra": False},
                        rf"member '{PREFIX}fold_0/extra.txt' is not in the manifest"),
    "missing_from_archive": ({"drop": (PREFIX + "plans.json",)},
                             rf"lists '{PREFIX}plans.json', which the archive lacks"),
    "duplicate": ({"duplicate": PREFIX + "plans.json"}, rf"member '{PREFIX}plans.json' occurs twice"),
    "size_differs": ({"manifest_edit": lambda m: m["files"][PREFIX + "plans.json"].update(size=3)},
                     rf"member '{PREFIX}plans.json' is \d+ bytes, but the manifest says 3"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_malicious_or_damaged_archives_are_refused(tmp_path, monkeypatch, exported, capsys, case):
    options, message = REFUSALS[case]
    bad = rewrite(exported, tmp_path / "bad.zip", **options)
    results = tmp_path / "results_b"
    set_paths(monkeypatch, tmp_path, results)
    with pytest.raises(ModelArchiveError, match=message):
        install_model_from_zip(bad)
    assert not results.exists()  # nothing created: no results folder, no dataset folder, no temporary folder
    assert install_main([str(bad)]) == 2
    assert "error: " in capsys.readouterr().err
    assert not results.exists()
    assert not Path("/tmp/synthunet_evil.txt").exists() and not (tmp_path / "x").exists()


def test_refusal_inside_an_existing_results_folder_leaves_it_unchanged(tmp_path, monkeypatch, exported):
    results = tmp_path / "results_b"
    (results / DATASET / "other_model").mkdir(parents=True)
    set_paths(monkeypatch, tmp_path, results)
    before = tree(results)
    bad = rewrite(exported, tmp_path / "bad.zip", manifest_edit=corrupt_checksum)
    with pytest.raises(ModelArchiveError, match="does not match its sha256"):
        install_model_from_zip(bad)
    assert tree(results) == before


def test_size_limit_refuses_zip_bombs(tmp_path, monkeypatch, exported, capsys):
    set_paths(monkeypatch, tmp_path, tmp_path / "results_b")
    with pytest.raises(ModelArchiveError, match="zip bomb"):
        install_model_from_zip(exported, max_total_bytes=1000)
    assert install_main([str(exported), "--max_size_gb", "1e-6"]) == 2
    assert "zip bomb" in capsys.readouterr().err
    assert not (tmp_path / "results_b").exists()


def test_not_a_zip_and_no_manifest(tmp_path, monkeypatch, exported):
    set_paths(monkeypatch, tmp_path, tmp_path / "results_b")
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(ModelArchiveError, match="not a readable zip"):
        install_model_from_zip(tmp_path / "not.zip")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr(PREFIX + "plans.json", "{}")
    with pytest.raises(ModelArchiveError, match=f"has no {MANIFEST_NAME}"):
        install_model_from_zip(tmp_path / "plain.zip")
    assert not (tmp_path / "results_b").exists()
