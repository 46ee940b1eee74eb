"""synth_find_best_configuration, synth_ensemble and synth_predict -c best on hand-made cross-validation folders.

The folds' validation folders are written as the training stage writes them (predictions and references on one
grid, brain masks, summary.json from evaluate_folders with the normalised scale); the scores are checked against
an independent computation (scikit-image's SSIM map, PSNR by hand, the documented percentile normalisation).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from synthunet.dataset.image_io import Geometry, read_image, write_image
from synthunet.evaluation import EvaluationError, evaluate_folders
from synthunet.inference.best_configuration import inference_information_path
from synthunet.inference.cli import main as predict_main
from synthunet.inference.ensemble_folders import EnsembleError, ensemble_folders
from synthunet.inference.ensemble_folders import main as ensemble_main
from synthunet.inference.find_best_configuration import TIE_TOLERANCE, choose, find_best_configuration
from synthunet.inference.find_best_configuration import main as find_best_main
from synthunet.inference.testing import write_model_folder
from synthunet.quickstart import best_configuration_step

DATASET = "Dataset999_Fake"
SHAPE = (20, 22, 24)  # z y x, larger than the 11-voxel SSIM window
CHANNELS = {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"}
GEOMETRY = Geometry(itk_spacing=(1.0, 1.0, 1.0), itk_origin=(0.0, 0.0, 0.0),
                    itk_direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), shape=SHAPE)
CONFIGURATIONS = ("2.5d", "3d_fullres")
FOLDS = {0: ("case_0", "case_1"), 1: ("case_2",)}


def reference_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth texture in [0.2, 0.8] inside an ellipsoid brain (the normalised scale), 0 outside; the brain."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = (z / 0.8) ** 2 + (y / 0.8) ** 2 + (x / 0.85) ** 2 < 1
    texture = ndimage.gaussian_filter(rng.random(SHAPE), 1.5)
    return np.where(brain, 0.2 + 0.6 * (texture - texture.min()) / np.ptp(texture), 0.0), brain


def noisy(sigma: float, salt: int):
    """A prediction: the reference plus white noise (own seed per configuration and case) inside the brain."""
    def predict(reference, brain, seed):
        rng = np.random.default_rng(1000 * salt + seed)
        return np.where(brain, reference + rng.normal(0, sigma, SHAPE), 0.0)
    return predict


def biased(beta: float):
    """A prediction: the reference plus a smooth ramp along x (hurts PSNR more than SSIM)."""
    def predict(reference, brain, seed):
        x = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")[2]
        return np.where(brain, reference + beta * 0.3 * (x + 1) / 2, 0.0)
    return predict


def model_folder(results: Path, configuration: str, trainer: str = "SynthTrainer", target: str = "T1C") -> Path:
    folder = results / f"{trainer}__synthUNetPlans__{configuration}__{target}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "dataset.json").is_file():
        (folder / "dataset.json").write_text(json.dumps({"channel_names": CHANNELS, "numTraining": 3,
                                                         "file_ending": ".nii.gz"}))
    return folder


def write_validation(folder: Path, fold: int, cases, predict) -> None:
    """fold_N/validation/ and validation_reference/ as the training stage writes them (T1C = channel 1)."""
    reference_folder = folder / f"fold_{fold}" / "validation_reference"
    validation = folder / f"fold_{fold}" / "validation"
    for case in cases:
        seed = int(case.split("_")[-1])
        reference, brain = reference_case(seed)
        write_image(reference.astype(np.float32), GEOMETRY, reference_folder / "images" / f"{case}_0001.nii.gz")
        write_image(np.zeros(SHAPE, np.uint8), GEOMETRY, reference_folder / "labels" / f"{case}.nii.gz")
        write_image(brain.astype(np.uint8), GEOMETRY, reference_folder / "masks" / f"{case}.nii.gz")
        write_image(predict(reference, brain, seed).astype(np.float32), GEOMETRY, validation / f"{case}_0001.nii.gz")
    (reference_folder / "dataset.json").write_text(json.dumps({"channel_names": CHANNELS, "labels": {},
                                                               "numTraining": 1, "file_ending": ".nii.gz"}))
    evaluate_folders(reference_folder / "images", validation, validation, labels_folder=reference_folder / "labels",
                     masks_folder=reference_folder / "masks", dataset_json=reference_folder / "dataset.json",
                     data_range=1.0, targets=["T1C"], cases=list(cases), progress=False, normalisation="none")


def cross_validation(results: Path, predictions: dict, folds: dict = FOLDS, trainer: str = "SynthTrainer") -> None:
    for configuration, predict in predictions.items():
        folder = model_folder(results, configuration, trainer)
        for fold, cases in folds.items():
            write_validation(folder, fold, cases, predict)


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("synthUNet_results", str(tmp_path / "results"))
    monkeypatch.delenv("synthUNet_raw", raising=False)
    monkeypatch.delenv("synthUNet_preprocessed", raising=False)
    monkeypatch.delenv("SYNTHUNET_DEBUG", raising=False)
    folder = tmp_path / "results" / DATASET
    folder.mkdir(parents=True)
    return folder


def independent_brain_scores(predictions: dict, configurations, cases=("case_0", "case_1", "case_2"),
                             normalisation: str = "percentile") -> dict:
    """Mean brain SSIM and PSNR of a candidate (the mean of its configurations' predictions), computed with
    scikit-image and by hand after the documented percentile normalisation (brain P0.5/P99.5, lower bound >= 0,
    data range = the normalised reference's brain range), or as given with data range 1 ("none")."""
    def normalise(volume, brain):
        if normalisation == "none":
            return volume
        low, high = np.percentile(volume[brain], [0.5, 99.5])
        low = max(low, 0.0)
        return (volume - low) / (high - low)

    ssims, psnrs = [], []
    for case in cases:
        seed = int(case.split("_")[-1])
        reference, brain = reference_case(seed)
        members = [predictions[c](reference, brain, seed).astype(np.float32).astype(np.float64) for c in configurations]
        prediction = np.mean(members, axis=0)
        reference = normalise(reference.astype(np.float32).astype(np.float64), brain)
        prediction = normalise(prediction, brain)
        data_range = 1.0 if normalisation == "none" else reference[brain].max() - reference[brain].min()
        _, ssim_map = structural_similarity(reference, prediction, data_range=data_range, gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False, full=True)
        ssims.append(ssim_map[brain].mean())
        psnrs.append(10 * math.log10(data_range ** 2 / np.mean((reference - prediction)[brain] ** 2)))
    return {"SSIM": float(np.mean(ssims)), "PSNR": float(np.mean(psnrs))}


def candidates_of(information: dict) -> dict:
    return {c["name"]: c for c in information["candidates"]}


def expected_choice(scores: dict) -> str:
    top = max(s["SSIM"] for s in scores.values())
    tied = {name: s for name, s in scores.items() if s["SSIM"] >= top - TIE_TOLERANCE}
    return max(tied, key=lambda name: tied[name]["PSNR"])


ENSEMBLE = "ensemble(2.5d + 3d_fullres)"


def check_against_independent(information: dict, predictions: dict, normalisation: str = "percentile") -> dict:
    scores = {name: independent_brain_scores(predictions, members, normalisation=normalisation)
              for name, members in (("2.5d", ["2.5d"]), ("3d_fullres", ["3d_fullres"]),
                                    (ENSEMBLE, ["2.5d", "3d_fullres"]))}
    found = candidates_of(information)
    assert set(found) == set(scores)
    for name, score in scores.items():
        assert found[name]["SSIM"]["mean"] == pytest.approx(score["SSIM"], abs=1e-6), name
        assert found[name]["PSNR"]["mean"] == pytest.approx(score["PSNR"], abs=1e-6), name
        assert found[name]["SSIM"]["n"] == 3
    assert information["best"]["name"] == expected_choice(scores)
    return scores


# --------------------------------------------------------------------------------------------- choosing


def test_picks_the_configuration_with_the_best_brain_ssim(results, capsys):
    predictions = {"2.5d": noisy(0.08, 1), "3d_fullres": noisy(0.01, 2)}
    cross_validation(results, predictions)
    assert find_best_main(["-d", "999", "-t", "T1C", "-f", "0", "1"]) == 0
    printed = capsys.readouterr().out
    assert "3d_fullres" in printed and "<- chosen" in printed and "synth_predict" in printed
    information = json.loads(inference_information_path(results, "T1C").read_text())
    check_against_independent(information, predictions)
    best = information["best"]
    assert best["name"] == "3d_fullres" and best["configurations"] == ["3d_fullres"]
    assert best["model_folders"] == ["SynthTrainer__synthUNetPlans__3d_fullres__T1C"]
    assert best["folds"] == [0, 1] and best["trainer"] == "SynthTrainer" and best["plans"] == "synthUNetPlans"
    assert information["cases"] == ["case_0", "case_1", "case_2"]  # the folds' cases pooled
    assert information["selection"]["evaluation"]["normalisation"] == "percentile"
    markdown = inference_information_path(results, "T1C").with_suffix(".md").read_text()
    assert "**3d_fullres**" in markdown and "| 3d_fullres |" in markdown and "chosen" in markdown
    assert "synth_predict -i INPUT -o OUTPUT -d Dataset999_Fake -c best --target T1C" in markdown
    assert not list(results.glob(".tmp_*"))  # written under temporary names, then renamed


def test_picks_the_ensemble_when_the_mean_is_better(results):
    predictions = {"2.5d": noisy(0.03, 1), "3d_fullres": noisy(0.03, 2)}  # independent errors: the mean halves them
    cross_validation(results, predictions)
    information = find_best_configuration(999, "T1C", folds=[0, 1], progress=False)
    check_against_independent(information, predictions)
    assert information["best"]["name"] == ENSEMBLE
    assert information["best"]["configurations"] == ["2.5d", "3d_fullres"]
    assert information["predict"]["equivalent"][-1] == "synth_ensemble -i OUTPUT_2.5d OUTPUT_3d_fullres -o OUTPUT"


def test_a_tie_in_ssim_is_broken_by_psnr(results):
    # on the normalised scale (no percentile normalisation) a smooth bias (3d_fullres) costs little SSIM but much
    # PSNR; averaged with a noisy 2.5d the ensemble's SSIM is a hair lower (within the tolerance), its PSNR far higher
    predictions = {"2.5d": noisy(0.0093, 1), "3d_fullres": biased(0.1)}
    cross_validation(results, predictions)
    information = find_best_configuration(999, "T1C", folds=[0, 1], normalisation="none", progress=False)
    scores = check_against_independent(information, predictions, normalisation="none")
    # the premise, computed independently: the highest SSIM is 3d_fullres', the ensemble's is within the tolerance
    assert max(scores, key=lambda n: scores[n]["SSIM"]) == "3d_fullres"
    assert 0 < scores["3d_fullres"]["SSIM"] - scores[ENSEMBLE]["SSIM"] < TIE_TOLERANCE
    assert scores["2.5d"]["SSIM"] < scores["3d_fullres"]["SSIM"] - TIE_TOLERANCE  # not part of the tie
    assert scores[ENSEMBLE]["PSNR"] > scores["3d_fullres"]["PSNR"] + 1
    assert information["best"]["name"] == ENSEMBLE


def test_choose_rules():
    def candidate(name, ssim, psnr, size=1):
        return {"name": name, "configurations": [name] * size, "SSIM": {"mean": ssim}, "PSNR": {"mean": psnr}}

    assert choose([candidate("a", 0.90, 20), candidate("b", 0.9002, 10)])["name"] == "b"  # SSIM decides
    assert choose([candidate("a", 0.90, 20), candidate("b", 0.90009, 10)])["name"] == "a"  # tie: PSNR decides
    assert choose([candidate("e", 0.90, 20, 2), candidate("a", 0.90, 20)])["name"] == "a"  # then fewer configurations
    assert choose([candidate("a", float("nan"), 30), candidate("b", 0.5, 10)])["name"] == "b"


def test_normalised_scale_scores_equal_the_fold_validation(results):
    """--normalisation none scores like the training stage's validation (normalised scale, data range 1)."""
    predictions = {"2.5d": noisy(0.05, 1), "3d_fullres": noisy(0.02, 2)}
    cross_validation(results, predictions)
    information = find_best_configuration(999, "T1C", folds=[0, 1], normalisation="none", progress=False)
    for configuration in CONFIGURATIONS:
        rows = []
        for fold in FOLDS:
            summary = results / f"SynthTrainer__synthUNetPlans__{configuration}__T1C" / f"fold_{fold}" / "validation"
            lines = (summary / "per_case.csv").read_text().splitlines()
            header = lines[0].split(",")
            rows += [dict(zip(header, line.split(","))) for line in lines[1:]]
        brain = [r for r in rows if r["region"] == "brain"]
        found = candidates_of(information)[configuration]
        assert found["SSIM"]["mean"] == pytest.approx(np.mean([float(r["SSIM"]) for r in brain]), abs=1e-9)
        assert found["PSNR"]["mean"] == pytest.approx(np.mean([float(r["PSNR"]) for r in brain]), abs=1e-9)


# --------------------------------------------------------------------------------------------- bad input


def assert_refused(capsys, argv, *fragments):
    assert find_best_main(argv) == 2
    error = capsys.readouterr().err
    lines = error.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), error
    for fragment in fragments:
        assert fragment in error, (fragment, error)


def no_information_written(results: Path) -> bool:
    return not list(results.rglob("inference_information*")) and not list(results.rglob(".tmp_*"))


def test_no_trained_configuration_is_an_error(results, capsys):
    model_folder(results, "3d_fullres", trainer="Baseline_Identity")  # another trainer does not count
    assert_refused(capsys, ["-d", "999", "-t", "T1C"], "No trained configuration for T1C",
                   "SynthTrainer__synthUNetPlans__CONFIGURATION__T1C")
    assert_refused(capsys, ["-d", "999", "-t", "T1C", "-c", "2.5d", "-f", "0"], "configuration 2.5d is not trained")
    assert no_information_written(results)


def test_missing_folds_of_one_configuration_are_named(results, capsys):
    predictions = {"2.5d": noisy(0.05, 1), "3d_fullres": noisy(0.02, 2)}
    cross_validation(results, {"3d_fullres": predictions["3d_fullres"]})
    cross_validation(results, {"2.5d": predictions["2.5d"]}, folds={0: FOLDS[0]})
    assert_refused(capsys, ["-d", "999", "-t", "T1C", "-f", "0", "1"],
                   "configuration 2.5d", "lacks the validation predictions of fold 1")
    # the default folds are 0-4: both configurations lack some, each is named
    assert_refused(capsys, ["-d", "999", "-t", "T1C"], "configuration 2.5d", "fold 1, 2, 3, 4",
                   "configuration 3d_fullres", "fold 2, 3, 4")
    # a validation folder that lost a prediction file
    fold_1 = results / "SynthTrainer__synthUNetPlans__3d_fullres__T1C" / "fold_1"
    (fold_1 / "validation" / "case_2_0001.nii.gz").unlink()
    assert_refused(capsys, ["-d", "999", "-t", "T1C", "-c", "3d_fullres", "-f", "0", "1"],
                   "configuration 3d_fullres", "fold 1 lacks fold_1/validation/case_2_0001.nii.gz")
    assert no_information_written(results)
    assert find_best_main(["-d", "999", "-t", "T1C", "-f", "0", "--quiet"]) == 0  # the folds both have


def test_different_cases_between_configurations_are_named(results, capsys):
    cross_validation(results, {"3d_fullres": noisy(0.02, 2)})
    cross_validation(results, {"2.5d": noisy(0.05, 1)}, folds={0: FOLDS[0], 1: ("case_3",)})
    assert_refused(capsys, ["-d", "999", "-t", "T1C", "-f", "0", "1"], "different cases",
                   "2.5d has no prediction of case_2", "3d_fullres has no prediction of case_3")
    assert no_information_written(results)
    with pytest.raises(EvaluationError, match="case_3"):
        find_best_configuration(999, "T1C", folds=[0, 1], progress=False)


def test_configurations_on_different_grids_are_compared_but_not_ensembled(results):
    cross_validation(results, {"3d_fullres": noisy(0.02, 2)})
    folder = model_folder(results, "2.5d")
    for fold, cases in FOLDS.items():
        write_validation(folder, fold, cases, noisy(0.05, 1))
        for path in (folder / f"fold_{fold}").rglob("*.nii.gz"):  # the same arrays on a coarser spacing
            array, geometry = read_image(path, dtype=None)
            write_image(array, Geometry((1.0, 1.0, 2.0), geometry.itk_origin, geometry.itk_direction, geometry.shape),
                        path)
    information = find_best_configuration(999, "T1C", folds=[0, 1], progress=False)
    assert set(candidates_of(information)) == {"2.5d", "3d_fullres"}
    assert "spacing" in information["ensembles_not_scored"][ENSEMBLE]
    assert information["best"]["name"] == "3d_fullres"


# --------------------------------------------------------------------------------------------- synth_ensemble


ODD = Geometry(itk_spacing=(0.9, 1.2, 3.0), itk_origin=(-12.5, 40.25, 7.0),
               itk_direction=(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0), shape=(5, 6, 7))


NAMES = ("a_0001.nii.gz", "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz")  # raw and BraTS case folders


def prediction_folder(root: Path, seed: int, names=NAMES, geometry: Geometry = ODD) -> tuple[Path, dict]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in names:
        arrays[name] = rng.normal(100, 30, geometry.shape).astype(np.float32)
        write_image(arrays[name], geometry, root / name)
    write_image(np.ones(geometry.shape, np.float32), geometry, root / "a_0001_uncertainty.nii.gz")
    return root, arrays


def test_synth_ensemble_averages_exactly_and_keeps_the_geometry(tmp_path, capsys):
    folders, arrays = zip(*(prediction_folder(tmp_path / f"p{k}", k) for k in range(3)))
    assert ensemble_main(["-i", *map(str, folders), "-o", str(tmp_path / "out")]) == 0
    assert "Wrote 2 averaged prediction(s)" in capsys.readouterr().out
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.nii.gz"))
    assert written == sorted(arrays[0])  # uncertainty maps are not averaged
    for name in arrays[0]:
        mean, geometry = read_image(tmp_path / "out" / name, dtype=None)
        expected = (np.sum([a[name].astype(np.float64) for a in arrays], axis=0) / 3).astype(np.float32)
        assert mean.dtype == np.float32
        np.testing.assert_array_equal(mean, expected)
        assert geometry.differences(ODD, tolerance=1e-6) == []


def test_synth_ensemble_refuses_different_cases_and_grids(tmp_path, capsys):
    first, _ = prediction_folder(tmp_path / "p0", 0)
    fewer, _ = prediction_folder(tmp_path / "p1", 1, names=("a_0001.nii.gz",))
    assert ensemble_main(["-i", str(first), str(fewer), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "different cases" in error and "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz" in error
    shifted = Geometry(ODD.itk_spacing, (-12.5, 41.25, 7.0), ODD.itk_direction, ODD.shape)
    other, _ = prediction_folder(tmp_path / "p2", 2, geometry=ODD)
    prediction_folder(tmp_path / "p2", 2, names=("a_0001.nii.gz",), geometry=shifted)
    assert ensemble_main(["-i", str(first), str(other), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "p2/a_0001.nii.gz is not on the grid" in error and "origin" in error
    assert not (tmp_path / "out").exists()  # checked before anything is written
    with pytest.raises(EnsembleError, match="at least two"):
        ensemble_folders([first], tmp_path / "out")


# --------------------------------------------------------------------------------------------- synth_predict -c best


def predict(tmp_path, inputs, output, *extra) -> int:
    return predict_main(["-i", str(inputs), "-o", str(tmp_path / output), "-d", "999", "--device", "cpu",
                         "--disable_tta", "--orientations", "1", "-npp", "0", "-nps", "0", *extra])


def test_synth_predict_follows_the_choice(results, tmp_path, capsys):
    for configuration in CONFIGURATIONS:  # tiny randomly initialised networks, fold 0
        write_model_folder(results, "T1C", configuration, seed=3 if configuration == "2.5d" else 7)
    inputs = tmp_path / "in"
    for channel in (0, 2, 3):
        rng = np.random.default_rng(channel)
        image = np.zeros((12, 14, 10), np.float32)
        image[2:-2, 2:-2, 2:-2] = 50 + 50 * rng.random((8, 10, 6))
        write_image(image, Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), GEOMETRY.itk_direction, image.shape),
                    inputs / f"c1_{channel:04d}.nii.gz")
    assert predict(tmp_path, inputs, "best", "-c", "best") == 2
    assert "run synth_find_best_configuration" in capsys.readouterr().err
    for configuration in CONFIGURATIONS:
        assert predict(tmp_path, inputs, configuration, "-c", configuration, "-f", "0") == 0
    single = {c: read_image(tmp_path / c / "c1_0001.nii.gz", dtype=np.float64)[0] for c in CONFIGURATIONS}
    assert not np.allclose(single["2.5d"], single["3d_fullres"])

    # one configuration chosen: exactly what -c 3d_fullres writes
    cross_validation(results, {"2.5d": noisy(0.08, 1), "3d_fullres": noisy(0.01, 2)}, folds={0: FOLDS[0]})
    assert find_best_main(["-d", "999", "-t", "T1C", "-f", "0", "--quiet"]) == 0
    assert predict(tmp_path, inputs, "best_single", "-c", "best") == 0
    best, geometry = read_image(tmp_path / "best_single" / "c1_0001.nii.gz", dtype=np.float64)
    np.testing.assert_array_equal(best, single["3d_fullres"])

    # an ensemble chosen: the voxel-wise mean of the two configurations' predictions, in the input geometry
    cross_validation(results, {"2.5d": noisy(0.03, 1), "3d_fullres": noisy(0.03, 2)}, folds={0: FOLDS[0]})
    assert find_best_main(["-d", "999", "-t", "T1C", "-f", "0", "--quiet"]) == 0
    information = inference_information_path(results, "T1C")
    assert json.loads(information.read_text())["best"]["name"] == ENSEMBLE
    assert predict(tmp_path, inputs, "best_ensemble", "-c", "best") == 0, capsys.readouterr().err
    mean, mean_geometry = read_image(tmp_path / "best_ensemble" / "c1_0001.nii.gz", dtype=None)
    expected = ((single["2.5d"] + single["3d_fullres"]) / 2).astype(np.float32)
    np.testing.assert_array_equal(mean, expected)
    assert mean_geometry.differences(geometry, tolerance=1e-6) == []
    assert sorted(p.name for p in tmp_path.iterdir() if "members" in p.name) == []  # temporary folders removed
    # the file itself as -c, and what an ensemble cannot do
    assert predict(tmp_path, inputs, "from_file", "-c", str(information)) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "from_file" / "c1_0001.nii.gz", dtype=None)[0], mean)
    assert predict(tmp_path, inputs, "uncertainty", "-c", "best", "--save_uncertainty") == 2
    assert "--save_uncertainty is not available for an ensemble" in capsys.readouterr().err
    assert predict(tmp_path, inputs, "t2f", "-c", "best", "--target", "T2F") == 2
    assert "No inference_information_*.json for T2F" in capsys.readouterr().err


def test_quickstart_runs_it_only_when_both_configurations_are_trained(results, capsys):
    cross_validation(results, {"3d_fullres": noisy(0.01, 2)}, folds={0: FOLDS[0]})
    assert best_configuration_step("999", results, "T1C", 0) is None
    assert no_information_written(results)
    cross_validation(results, {"2.5d": noisy(0.08, 1)}, folds={0: FOLDS[0]})
    assert best_configuration_step("999", results, "T1C", 0) == "3d_fullres"
    assert "$ synth_find_best_configuration -d 999 -t T1C" in capsys.readouterr().out
    assert json.loads(inference_information_path(results, "T1C").read_text())["folds"] == [0]
