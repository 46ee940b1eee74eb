"""Commands remove the temporary files a killed earlier run left behind, their own and no others (issue 17)."""
from __future__ import annotations

from pathlib import Path

from synthunet.dataset.image_io import remove_stale_temporaries


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / "sub").mkdir()
    names = [".tmp_0123abcd_a.nii.gz", ".tmp_0123abcd_b.json", ".tmp_0123abcd_x", ".tmp_0123ABCD_a.nii.gz",
             "sub/.tmp_89abcdef_c.pth", ".tmp_0123abcd_dir"]
    for name in names[:-1]:
        (tmp_path / name).write_text("")
    (tmp_path / names[-1]).mkdir()
    removed = remove_stale_temporaries([tmp_path / "a.nii.gz", tmp_path / "b.json"])
    assert sorted(p.name for p in removed) == [".tmp_0123abcd_a.nii.gz", ".tmp_0123abcd_b.json"]
    assert [p.name for p in remove_stale_temporaries(folders=[tmp_path / "sub", tmp_path / "missing"])] == \
        [".tmp_89abcdef_c.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp_0123ABCD_a.nii.gz", ".tmp_0123abcd_dir",
                                                          ".tmp_0123abcd_x", "sub"]


def _stale(folder: Path, *names: str) -> list[Path]:
    """Temporary files as a killed run leaves them (``.tmp_XXXXXXXX_{name}``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f".tmp_0123abcd_{name}" for name in names]
    for path in paths:
        path.write_text("left by a killed run")
    return paths


def test_evaluate_fingerprint_and_plans_remove_their_stale_temporaries(tmp_path, monkeypatch, capsys):
    from synthetic_raw import make_tiny_raw_dataset
    from synthunet.evaluation.cli import evaluate_main
    from synthunet.fingerprint.cli import main as fingerprint_main
    from synthunet.planning.cli import main as plan_main
    from test_evaluation_folders import make_raw

    images, labels, predictions, dataset_json = make_raw(tmp_path / "evaluation", cases=("case_a",))
    output = tmp_path / "evaluation" / "out"
    own = _stale(output, "summary.json", "per_case.csv")
    foreign = _stale(output, "my_notes.json")
    assert evaluate_main(["-ref", str(images), "-pred", str(predictions), "-l", str(labels), "--dataset_json",
                          str(dataset_json), "-o", str(output), "--quiet"]) == 0, capsys.readouterr().err
    assert not any(p.exists() for p in own) and all(p.exists() for p in foreign)

    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    make_tiny_raw_dataset(tmp_path / "raw" / "Dataset982_Stale", n_cases=2, shape=(20, 22, 20), seed=3)
    preprocessed = tmp_path / "preprocessed" / "Dataset982_Stale"
    own = _stale(preprocessed, "dataset_fingerprint.json", "dataset.json", "synthUNetPlans.json")
    foreign = _stale(preprocessed, "splits_final.json", "OtherPlans.json")  # other commands' (training's) files
    assert fingerprint_main(["-d", "982", "-np", "1", "--no_progress"]) == 0, capsys.readouterr().err
    assert plan_main(["-d", "982", "--cpu_gflops", "40", "-c", "3d_fullres"]) == 0, capsys.readouterr().err
    assert not any(p.exists() for p in own) and all(p.exists() for p in foreign)


def test_example_dataset_removes_its_stale_staging_folders(tmp_path, monkeypatch):
    from synthunet.dataset.example import generate as generate_module

    monkeypatch.setenv("synthUNet_raw", str(tmp_path))
    own = [tmp_path / ".tmp_Dataset509_BraTSPhantom_0123abcd", tmp_path / ".old_Dataset509_BraTSPhantom_89abcdef"]
    foreign = [tmp_path / ".tmp_Dataset510_BraTSPhantom_0123abcd", tmp_path / ".tmp_Dataset509_BraTSPhantom_mine"]
    for folder in own + foreign:
        (folder / "imagesTr").mkdir(parents=True)
    assert generate_module.main(["-d", "509", "--num_cases", "1", "--spacing", "6", "-np", "1", "--no_progress"]) == 0
    assert not any(p.exists() for p in own) and all(p.exists() for p in foreign)
