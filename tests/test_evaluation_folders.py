"""Folder evaluation: file matching (raw and BraTS layouts), outputs, CLI, cross-validation, report, segmenter hook."""
import csv
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from synthunet.dataset.image_io import Geometry, read_image, write_image
from synthunet.evaluation import EvaluationError, evaluate_folders, match_folders
from synthunet.evaluation.cli import accumulate_main, evaluate_main
from synthunet.evaluation.crossval import accumulate_folds
from synthunet.evaluation.report import main as report_main
from synthunet.utilities.atomic_io import json_safe

SHAPE = (24, 26, 28)
CHANNELS = {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"}
BRATS = {"T1N": "t1n", "T1C": "t1c", "T2W": "t2w", "T2F": "t2f"}


def write(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    geometry = Geometry(itk_spacing=spacing, itk_origin=(0.0, 0.0, 0.0),
                        itk_direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), shape=array.shape)
    write_image(array, geometry, path)
    return path


def make_case(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four smooth 'sequences' inside an ellipsoid brain and a tumour (labels 2 around 1 and 3), bright in T1C."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = (z / 0.8) ** 2 + (y / 0.8) ** 2 + (x / 0.85) ** 2 < 1
    centre = rng.uniform(-0.2, 0.2, 3)
    distance = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[(distance < 0.35) & brain] = 2
    labels[(distance < 0.22) & brain] = 1
    labels[(distance < 0.12) & brain] = 3
    images = {}
    for index, name in enumerate(CHANNELS.values()):
        texture = ndimage.gaussian_filter(rng.random(SHAPE), 1.5)
        image = np.where(brain, 100 + 50 * index + 300 * (texture - texture.min()) / np.ptp(texture), 0.0)
        if name == "T1C":
            image[labels == 3] += 400
        images[name] = image.astype(np.float32)
    return images, labels


def make_raw(root: Path, cases=("case_a", "case_b", "case_c"), noise=20.0, missing_prediction=None):
    """A raw dataset (imagesTr, labelsTr, dataset.json) and predictions {case}_0001.nii.gz of T1C."""
    images_folder, labels_folder, predictions = root / "imagesTr", root / "labelsTr", root / "pred"
    for seed, case in enumerate(cases):
        images, labels = make_case(seed)
        for index, name in enumerate(CHANNELS.values()):
            write(images_folder / f"{case}_{index:04d}.nii.gz", images[name])
        write(labels_folder / f"{case}.nii.gz", labels)
        if case != missing_prediction:
            rng = np.random.default_rng(100 + seed)
            prediction = images["T1C"] + rng.normal(0, noise, SHAPE).astype(np.float32) * (images["T1C"] > 0)
            write(predictions / f"{case}_0001.nii.gz", prediction)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": CHANNELS, "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3},
        "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return images_folder, labels_folder, predictions, root / "dataset.json"


def make_brats(root: Path, cases=("BraTS-GLI-00001-000", "BraTS-GLI-00002-000"), nested_predictions=False):
    reference, predictions = root / "reference", root / "predictions"
    for seed, case in enumerate(cases):
        images, labels = make_case(seed)
        for name, sequence in BRATS.items():
            write(reference / case / f"{case}-{sequence}.nii.gz", images[name])
        write(reference / case / f"{case}-seg.nii.gz", labels)
        folder = predictions / case if nested_predictions else predictions
        write(folder / f"{case}-t2f.nii.gz", images["T2F"] * 0.9 + 5 * (images["T2F"] > 0))
    return reference, predictions


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------------------------- matching


def test_raw_matching_with_dataset_json(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path)
    from synthunet.evaluation.layout import channel_names_from

    matched = match_folders(images, predictions, labels, channel_names=channel_names_from(dataset_json))
    assert [(m.case, m.target) for m in matched] == [("case_a", "T1C"), ("case_b", "T1C"), ("case_c", "T1C")]
    first = matched[0]
    assert first.reference.name == "case_a_0001.nii.gz" and first.prediction.name == "case_a_0001.nii.gz"
    assert first.labels.name == "case_a.nii.gz" and first.mask is None
    assert list(first.inputs) == ["T1N", "T2W", "T2F"]
    assert first.channel_indices == {"T1N": 0, "T1C": 1, "T2W": 2, "T2F": 3}


def test_raw_matching_without_dataset_json_names_channels_by_index(tmp_path):
    images, _, predictions, _ = make_raw(tmp_path, cases=("case_a",))
    matched = match_folders(images, predictions)
    assert matched[0].target == "1" and matched[0].labels is None


def test_missing_prediction_is_an_error_or_skipped(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, missing_prediction="case_b")
    with pytest.raises(EvaluationError, match=r"reference\(s\) without prediction.*case_b \[T1C\]"):
        evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json, progress=False)
    with pytest.warns(UserWarning, match="case_b"):
        summary = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json,
                                   allow_missing=True, progress=False)
    assert summary["cases"] == ["case_a", "case_c"]
    # restricting to some cases (a fold's validation cases) is not "missing"
    summary = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json,
                               cases=["case_c"], progress=False)
    assert summary["cases"] == ["case_c"]


def test_prediction_without_reference_and_missing_labels_are_errors(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a",))
    write(predictions / "stranger_0001.nii.gz", np.zeros(SHAPE, np.float32))
    with pytest.raises(EvaluationError, match=r"prediction\(s\) without reference.*stranger_0001.nii.gz"):
        match_folders(images, predictions, labels)
    (predictions / "stranger_0001.nii.gz").unlink()
    (labels / "case_a.nii.gz").unlink()
    with pytest.raises(EvaluationError, match="no label map for case case_a"):
        match_folders(images, predictions, labels)
    with pytest.raises(EvaluationError, match="does not exist"):
        match_folders(images, tmp_path / "nowhere")


def test_brats_layouts_flat_and_nested(tmp_path):
    for nested in (False, True):
        reference, predictions = make_brats(tmp_path / str(nested), nested_predictions=nested)
        matched = match_folders(reference, predictions)
        assert [(m.case, m.target) for m in matched] == [("BraTS-GLI-00001-000", "T2F"), ("BraTS-GLI-00002-000", "T2F")]
        assert matched[0].labels.name == "BraTS-GLI-00001-000-seg.nii.gz"
        assert list(matched[0].inputs) == ["T1N", "T1C", "T2W"]
        assert matched[0].reference.name == "BraTS-GLI-00001-000-t2f.nii.gz"
    (predictions / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t2f.nii.gz").unlink()
    with pytest.raises(EvaluationError, match=r"BraTS-GLI-00002-000 \[T2F\]"):
        match_folders(reference, predictions)


def test_raw_predictions_against_brats_reference_and_bare_names(tmp_path):
    reference, _ = make_brats(tmp_path)
    images, _ = make_case(0)
    raw_predictions = tmp_path / "raw_pred"
    write(raw_predictions / "BraTS-GLI-00001-000_0003.nii.gz", images["T2F"])
    matched = match_folders(reference, raw_predictions, channel_names={3: "T2F"}, cases=["BraTS-GLI-00001-000"])
    assert matched[0].target == "T2F"
    with pytest.raises(EvaluationError, match="--dataset_json"):  # index "3" is no BraTS channel name
        match_folders(reference, raw_predictions, cases=["BraTS-GLI-00001-000"])
    bare = tmp_path / "bare"
    write(bare / "BraTS-GLI-00001-000.nii.gz", images["T1C"])
    with pytest.raises(EvaluationError, match="--target"):
        match_folders(reference, bare, cases=["BraTS-GLI-00001-000"])
    matched = match_folders(reference, bare, target="t1c", cases=["BraTS-GLI-00001-000"])
    assert matched[0].target == "T1C" and matched[0].reference.name.endswith("-t1c.nii.gz")


# --------------------------------------------------------------------------------------------- outputs


def test_evaluate_folders_writes_csv_and_json(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a", "case_b"))
    output = tmp_path / "validation"
    summary = evaluate_folders(images, predictions, output_folder=output, labels_folder=labels,
                               dataset_json=dataset_json, progress=False)
    rows = read_rows(output / "per_case.csv")
    assert list(rows[0]) == ["case", "target", "region", "n_voxels", "MAE", "MSE", "PSNR", "SSIM", "NCC",
                             "psnr_data_range", "ssim_data_range", "normalisation"]
    assert {r["normalisation"] for r in rows} == {"percentile"}
    assert {(r["case"], r["region"]) for r in rows} == {(c, r) for c in ("case_a", "case_b")
                                                        for r in ("brain", "tumour", "healthy", "NCR", "ED", "ET")}
    assert all(0 < float(r["SSIM"]) <= 1 for r in rows)
    written = json.loads((output / "summary.json").read_text())
    stats = written["per_target"]["T1C"]["tumour"]["SSIM"]
    assert set(stats) == {"mean", "std", "median", "min", "max", "n"} and stats["n"] == 2
    values = [float(r["SSIM"]) for r in rows if r["region"] == "tumour"]
    assert stats["mean"] == pytest.approx(np.mean(values)) and stats["median"] == pytest.approx(np.median(values))
    assert written["mode"] == "region" and written["num_cases"] == 2
    assert written["normalisation"] == "percentile"
    assert written["settings"]["normalisation"]["computed_over"] == "brain mask"
    assert written["settings"]["normalisation"]["percentiles"] == [0.5, 99.5]
    # (NaN in memory is null in the file: here ET lies above the brain's 99.5 % percentile in T1C, so it is
    # clipped to 1 in both images and its PSNR and NCC are undefined)
    assert json_safe(summary["per_target"]) == written["per_target"]
    assert not list(output.glob(".tmp_*"))  # atomic writes leave no temporary files


def test_a_second_evaluation_into_the_same_folder_warns_and_drops_a_stale_segmenter_table(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a", "case_b"))
    output = tmp_path / "validation"
    evaluate_folders(images, predictions, output_folder=output, labels_folder=labels, dataset_json=dataset_json,
                     progress=False)
    (output / "segmentation_dice.csv").write_text("an earlier run's segmenter check\n")
    (output / "segmentation_dice.md").write_text("an earlier run's table\n")
    with pytest.warns(UserWarning, match="Replacing the evaluation in .*validation.*the same prediction folder"):
        evaluate_folders(images, predictions, output_folder=output, labels_folder=labels,
                         dataset_json=dataset_json, progress=False)
    assert not (output / "segmentation_dice.csv").exists() and not (output / "segmentation_dice.md").exists()
    assert (output / "per_case.csv").is_file() and (output / "summary.json").is_file()


def test_cli_evaluate_region_and_brasyn_modes(tmp_path, capsys):
    reference, predictions = make_brats(tmp_path)
    summary_path = tmp_path / "out" / "summary.json"
    assert evaluate_main(["-ref", str(reference), "-pred", str(predictions), "-o", str(summary_path), "--quiet"]) == 0
    rows = read_rows(summary_path.parent / "per_case.csv")
    assert {r["region"] for r in rows} == {"brain", "tumour", "healthy", "NCR", "ED", "ET"}
    brasyn_path = tmp_path / "out" / "brasyn.json"
    assert evaluate_main(["-ref", str(reference), "-pred", str(predictions), "-o", str(brasyn_path),
                          "--mode", "brasyn", "--per_case_csv", str(tmp_path / "out" / "brasyn.csv"), "--quiet"]) == 0
    brasyn_rows = read_rows(tmp_path / "out" / "brasyn.csv")
    assert {r["region"] for r in brasyn_rows} == {"tumour", "healthy"}
    assert all(float(r["psnr_data_range"]) == 1.0 for r in brasyn_rows)
    brasyn_summary = json.loads(brasyn_path.read_text())
    assert brasyn_summary["mode"] == "brasyn" and brasyn_summary["normalisation"] == "percentile"
    assert brasyn_summary["settings"]["normalisation"]["computed_over"].startswith("whole volume")
    # errors become a message and exit code 2
    (predictions / "BraTS-GLI-00001-000-t2f.nii.gz").unlink()
    assert evaluate_main(["-ref", str(reference), "-pred", str(predictions), "-o", str(summary_path), "--quiet"]) == 2
    assert "BraTS-GLI-00001-000 [T2F]" in capsys.readouterr().err


def test_cli_normalisation_flag_is_accepted_and_recorded(tmp_path, capsys):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a",))
    unscaled = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json,
                                progress=False)
    # the prediction at another scanner gain: the same scores with the percentile normalisation
    scaled, _ = read_image(predictions / "case_a_0001.nii.gz")
    write(predictions / "case_a_0001.nii.gz", (scaled * 37).astype(np.float32))
    results = {}
    for normalisation in ("percentile", "none"):
        output = tmp_path / normalisation
        assert evaluate_main(["-ref", str(images), "-pred", str(predictions), "-l", str(labels), "--dataset_json",
                              str(dataset_json), "--normalisation", normalisation, "-o", str(output), "--quiet"]) == 0
        summary = json.loads((output / "summary.json").read_text())
        assert summary["normalisation"] == normalisation
        assert summary["settings"]["normalisation"]["method"] == normalisation
        rows = read_rows(output / "per_case.csv")
        assert {r["normalisation"] for r in rows} == {normalisation}
        results[normalisation] = {r["region"]: float(r["SSIM"]) for r in rows}
    for row in unscaled["rows"]:
        assert results["percentile"][row["region"]] == pytest.approx(row["SSIM"], abs=1e-6)
    assert results["percentile"]["brain"] > 0.8 and results["none"]["brain"] < 0.2  # the gain counts as given
    # brasyn mode has its own normalisation; an unknown value is refused by the parser
    assert evaluate_main(["-ref", str(images), "-pred", str(predictions), "--dataset_json", str(dataset_json),
                          "--mode", "brasyn", "--normalisation", "none", "-o", str(tmp_path / "b"), "--quiet"]) == 2
    assert "only valid in region mode" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main(["-ref", str(images), "-pred", str(predictions), "--normalisation", "zscore", "-o",
                       str(tmp_path / "c")])
    # Python API: the same option
    summary = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json,
                               normalisation="none", progress=False)
    assert summary["normalisation"] == "none" and summary["settings"]["normalisation"] == {"method": "none"}
    assert {r["normalisation"] for r in summary["rows"]} == {"none"}


def test_parallel_evaluation_gives_the_same_rows(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a", "case_b"))
    serial = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json, progress=False)
    parallel = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json,
                                num_processes=2, progress=False)
    assert json_safe(serial["rows"]) == json_safe(parallel["rows"])  # NaN (a clipped, constant ET) as None


def test_accumulate_crossval_over_two_folds(tmp_path, monkeypatch):
    images, labels, predictions, dataset_json = make_raw(tmp_path / "raw", cases=("case_a", "case_b", "case_c"))
    results = tmp_path / "results"
    model = results / "Dataset501_Test" / "SynthTrainer__synthUNetPlans__3d_fullres__T1C"
    for fold, cases in ((0, ["case_a", "case_b"]), (1, ["case_c"])):
        evaluate_folders(images, predictions, output_folder=model / f"fold_{fold}" / "validation",
                         labels_folder=labels, dataset_json=dataset_json, cases=cases, progress=False)
    monkeypatch.setenv("synthUNet_results", str(results))
    monkeypatch.delenv("synthUNet_raw", raising=False)
    monkeypatch.delenv("synthUNet_preprocessed", raising=False)
    assert accumulate_main(["-d", "501", "-c", "3d_fullres", "-tr", "SynthTrainer", "--target", "T1C",
                            "-f", "0", "1", "--quiet"]) == 0
    merged = model / "crossval_results_folds_0_1"
    rows = read_rows(merged / "per_case.csv")
    assert list(rows[0])[:2] == ["fold", "case"]
    assert sorted({(r["fold"], r["case"]) for r in rows}) == [("0", "case_a"), ("0", "case_b"), ("1", "case_c")]
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["num_cases"] == 3 and summary["folds"] == [0, 1]
    brain_ssim = [float(r["SSIM"]) for r in rows if r["region"] == "brain"]
    assert summary["per_target"]["T1C"]["brain"]["SSIM"]["mean"] == pytest.approx(np.mean(brain_ssim))
    assert set(summary["per_fold"]) == {"0", "1"}
    assert summary["normalisation"] == "percentile" and {r["normalisation"] for r in rows} == {"percentile"}
    # folds evaluated with different normalisations are not merged
    evaluate_folders(images, predictions, output_folder=model / "fold_2" / "validation", labels_folder=labels,
                     dataset_json=dataset_json, cases=["case_a"], normalisation="none", progress=False)
    with pytest.raises(EvaluationError, match="different normalisations"):
        accumulate_folds(model, [1, 2])
    # a fold without validation results is named in the error
    with pytest.raises(EvaluationError, match="fold_3"):
        accumulate_folds(model, [0, 1, 3])
    assert accumulate_main(["-d", "501", "-c", "2d", "--target", "T1C", "-f", "0", "--quiet"]) == 2


def test_evaluation_commands_share_run_cli(tmp_path, monkeypatch, capsys):
    """Errors: one 'error: ...' line, one 'hint: ...' line and exit code 2; SYNTHUNET_DEBUG=1 raises instead
    (traceback)."""
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a",))
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    missing = tmp_path / "nothing"
    commands = [(evaluate_main, ["-ref", str(missing), "-pred", str(predictions), "-o", str(tmp_path / "e"), "--quiet"]),
                (accumulate_main, ["-d", "501", "-c", "3d_fullres", "--target", "T1C", "--quiet"]),
                (report_main, ["-i", str(predictions), "-ref", str(missing), "-o", str(tmp_path / "r"), "--quiet"])]
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)
    for (main, argv), message in zip(commands, ("nothing does not exist", "Dataset501", "nothing does not exist")):
        assert main(argv) == 2
        error = capsys.readouterr().err
        lines = error.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and message in lines[0], error
        assert lines[1].startswith("hint: "), error
    monkeypatch.setenv("SYNTHUNET_DEBUG", "1")
    for (main, argv), error in zip(commands, (EvaluationError, FileNotFoundError, EvaluationError)):
        with pytest.raises(error):
            main(argv)


# --------------------------------------------------------------------------------------------- report


def test_report_writes_pngs_and_html_worst_first(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a", "case_b"))
    # make case_b clearly worse
    bad, geometry = read_image(predictions / "case_b_0001.nii.gz")
    write(predictions / "case_b_0001.nii.gz", bad + np.random.default_rng(0).normal(0, 150, SHAPE).astype(np.float32)
          * (bad > 0))
    uncertainty = tmp_path / "uncertainty"
    write(uncertainty / "case_a_0001.nii.gz", np.abs(bad - bad.mean()).astype(np.float32))
    report = tmp_path / "report"
    with pytest.warns(UserWarning, match="no uncertainty map for case case_b"):
        assert report_main(["-i", str(predictions), "-ref", str(images), "-l", str(labels), "--dataset_json",
                            str(dataset_json), "--uncertainty", str(uncertainty), "-o", str(report), "--quiet"]) == 0
    pngs = sorted(report.glob("*.png"))
    assert [p.name for p in pngs] == ["case_a__T1C.png", "case_b__T1C.png"]
    assert all(p.stat().st_size > 10_000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    page = (report / "index.html").read_text()
    assert page.index("case_b__T1C.png") < page.index("case_a__T1C.png")  # worst (lowest SSIM) first
    assert "href='case_a__T1C.png'" in page and str(tmp_path) not in page  # relative links only


def test_report_from_brats_folders_with_separate_inputs(tmp_path):
    reference, predictions = make_brats(tmp_path, cases=("BraTS-GLI-00001-000",))
    report = tmp_path / "report"
    assert report_main(["-i", str(predictions), "-ref", str(reference), "--inputs", str(reference),
                        "-o", str(report), "--quiet"]) == 0
    assert (report / "BraTS-GLI-00001-000__T2F.png").stat().st_size > 10_000
    assert (report / "index.html").stat().st_size > 0


# --------------------------------------------------------------------------------------------- segmenter


THRESHOLD_SEGMENTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    import SimpleITK as sitk

    source, destination = Path(sys.argv[1]), Path(sys.argv[2])
    destination.mkdir(parents=True, exist_ok=True)
    for t1c in sorted(source.glob("*_0001.nii.gz")):
        case = t1c.name[: -len("_0001.nii.gz")]
        image = sitk.ReadImage(str(t1c))
        labels = (sitk.GetArrayFromImage(image) > 600).astype(np.uint8) * 3  # bright T1C = enhancing tumour
        out = sitk.GetImageFromArray(labels)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(destination / f"{case}.nii.gz"))
""")


def test_segmenter_hook_with_a_thresholding_script(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a", "case_b"))
    # case_b's prediction misses the enhancement entirely
    flat, _ = read_image(predictions / "case_b_0001.nii.gz")
    write(predictions / "case_b_0001.nii.gz", np.minimum(flat, 500).astype(np.float32))
    script = tmp_path / "threshold segmenter.py"  # a space in the path: the template is split with shlex
    script.write_text(THRESHOLD_SEGMENTER)
    command = f"{sys.executable} '{script}' {{input}} {{output}}"
    output = tmp_path / "out"
    work = tmp_path / "work"
    summary = evaluate_folders(images, predictions, output_folder=output, labels_folder=labels,
                               dataset_json=dataset_json, segmenter=command, segmenter_work_folder=work,
                               progress=False)
    assert sorted(p.name for p in (work / "real" / "input").iterdir())[:4] == [
        "case_a_0000.nii.gz", "case_a_0001.nii.gz", "case_a_0002.nii.gz", "case_a_0003.nii.gz"]
    rows = {(r["case"], r["input_set"]): r for r in read_rows(output / "segmentation_dice.csv")}
    assert float(rows[("case_a", "real")]["ET"]) == 1.0  # the threshold finds exactly label 3 on real T1C
    assert float(rows[("case_b", "real")]["ET"]) == 1.0
    assert float(rows[("case_a", "synthetic")]["ET"]) > 0.8
    assert float(rows[("case_b", "synthetic")]["ET"]) == 0.0  # no enhancement in the synthetic T1C
    assert float(rows[("case_b", "synthetic")]["WT"]) == 0.0
    dice = summary["downstream_segmentation"]["per_target"]["T1C"]
    assert dice["real"]["ET"]["mean"] == 1.0 and dice["synthetic"]["ET"]["mean"] < 0.6
    # the missing set: T1C replaced by zeros on the reference grid, so the threshold finds nothing
    zeros, geometry = read_image(work / "missing_T1C" / "input" / "case_a_0001.nii.gz")
    assert not zeros.any() and geometry.shape == SHAPE
    assert read_image(work / "missing_T1C" / "input" / "case_a_0002.nii.gz")[0].any()
    assert float(rows[("case_a", "missing")]["ET"]) == 0.0 and float(rows[("case_a", "missing")]["WT"]) == 0.0
    assert dice["missing"]["ET"]["mean"] == 0.0
    assert [r["input_set"] for r in read_rows(output / "segmentation_dice.csv")][:3] == ["real", "synthetic", "missing"]
    table = (output / "segmentation_dice.md").read_text()
    assert "| T1C | real | 2 |" in table and "| T1C | synthetic | 2 |" in table
    assert "| T1C | missing | 2 | 0.0000 ± 0.0000 | 0.0000 ± 0.0000 | 0.0000 ± 0.0000 |" in table
    # fewer sets on request
    only = evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json, segmenter=command,
                            segmenter_sets=["missing", "real"], progress=False)
    assert [r["input_set"] for r in only["segmentation_rows"]] == ["real", "missing"] * 2
    with pytest.raises(EvaluationError, match="input set"):
        evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json, segmenter=command,
                         segmenter_sets=["fake"], progress=False)
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)' {{input}} {{output}}"
    with pytest.raises(EvaluationError, match="exit code 3"):
        evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json, segmenter=failing,
                         progress=False)
    with pytest.raises(EvaluationError, match=r"\{input\}"):
        evaluate_folders(images, predictions, labels_folder=labels, dataset_json=dataset_json,
                         segmenter="echo {output}", progress=False)
