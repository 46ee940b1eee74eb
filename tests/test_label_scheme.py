"""Labels and regions from dataset.json (issue 18, item 2): BraTS 2023 labels and nnU-Net's Dataset137 regions
give the same tumour parts, the same WT / TC / ET Dice and the same per-region metrics; labels that cannot be
mapped give an error naming them; the validator accepts region labels. Tiny 16^3 volumes."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from synthunet.dataset.dataset_json import load_dataset_json, parse_dataset_json
from synthunet.dataset.image_io import Geometry, read_image, write_image
from synthunet.dataset.label_scheme import (BRATS_2023_LABELS, NNUNET_BRATS_REGION_LABELS,
                                            NNUNET_BRATS_REGIONS_CLASS_ORDER, LabelSchemeError, brats_2023_scheme,
                                            label_scheme_from_dataset_json, label_scheme_from_labels, normalise_name)
from synthunet.dataset.validate import validate_dataset
from synthunet.errors import InputError
from synthunet.evaluation import evaluate_case, evaluate_folders
from synthunet.evaluation.metrics import brats_region_dice

SHAPE = (16, 16, 16)
CHANNELS = {"0": "T1N", "1": "T1C"}
#: BraTS 2023 value -> nnU-Net Dataset137 value (NCR 1 -> 2, ED 2 -> 1, ET 3 -> 3)
TO_NNUNET = {0: 0, 1: 2, 2: 1, 3: 3}
NNUNET_JSON = {"labels": NNUNET_BRATS_REGION_LABELS, "regions_class_order": NNUNET_BRATS_REGIONS_CLASS_ORDER}


def to_nnunet(labels: np.ndarray) -> np.ndarray:
    return np.vectorize(TO_NNUNET.get)(labels).astype(labels.dtype)


def tumour(seed: int, shift: float = 0.0) -> np.ndarray:
    """A 16^3 BraTS 2023 label map: edema (2) around necrosis (1) around enhancing tumour (3), not concentric."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s, dtype=float) for s in SHAPE], indexing="ij")
    centre = np.array([7.5, 7.5, 7.5]) + rng.uniform(-1, 1, 3) + shift

    def ball(radius, offset=(0.0, 0.0, 0.0)):
        c = centre + np.asarray(offset)
        return (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < radius ** 2

    labels = np.zeros(SHAPE, np.uint8)
    labels[ball(5.5)] = 2
    labels[ball(3.5, (0.7, 0, 0))] = 1
    labels[ball(2.0, (0, 0.8, -0.5))] = 3
    return labels


def images(seed: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference, prediction) T1C-like volumes: brain everywhere but the border, brighter in the tumour."""
    rng = np.random.default_rng(seed)
    brain = np.zeros(SHAPE, bool)
    brain[1:-1, 1:-1, 1:-1] = True
    reference = np.where(brain, 100 + 30 * rng.random(SHAPE) + 40 * labels, 0).astype(np.float32)
    prediction = np.where(brain, reference + rng.normal(0, 8, SHAPE) + 15 * (labels == 3), 0).astype(np.float32)
    return reference, prediction


def write(path: Path, array: np.ndarray) -> None:
    write_image(array, Geometry(itk_spacing=(1.0, 1.0, 1.0), itk_origin=(0.0, 0.0, 0.0),
                                itk_direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), shape=array.shape), path)


# ---------------------------------------------------------------------------------------------- the mapping
def test_brats_2023_and_dataset137_map_to_the_same_tissues():
    brats = label_scheme_from_labels(BRATS_2023_LABELS)
    nnunet = label_scheme_from_labels(NNUNET_BRATS_REGION_LABELS, NNUNET_BRATS_REGIONS_CLASS_ORDER)
    assert not brats.uses_regions and nnunet.uses_regions
    assert brats.parts == {"NCR": (1,), "ED": (2,), "ET": (3,)}
    assert nnunet.parts == {"NCR": (2,), "ED": (1,), "ET": (3,)}
    assert brats.regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    assert nnunet.regions == {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}
    assert brats.names == {1: "NCR", 2: "ED", 3: "ET"} and nnunet.names == {2: "NCR", 1: "ED", 3: "ET"}
    assert list(nnunet.names.values()) == ["NCR", "ED", "ET"]  # report order is by tumour part, not by value
    assert nnunet.as_labels() == {"background": 0, "ED": 1, "NCR": 2, "ET": 3}
    # for every tissue, the two numberings pick the same voxels
    labels = tumour(0)
    for region in ("WT", "TC", "ET"):
        np.testing.assert_array_equal(brats.region_mask(labels, region), nnunet.region_mask(to_nnunet(labels), region))
    # regions_class_order may be left out: the regions alone define the mapping
    assert label_scheme_from_labels(NNUNET_BRATS_REGION_LABELS).regions == nnunet.regions


@pytest.mark.parametrize("labels, parts", [
    ({"background": 0, "necrosis": 1, "oedema": 2, "enhancing tumour": 3}, {"NCR": (1,), "ED": (2,), "ET": (3,)}),
    ({"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}, {"NCR": (1,), "ED": (2,), "ET": (3,)}),
    ({"background": 0, "NCR/NET": 1, "ED": 2, "ET": 4}, {"NCR": (1,), "ED": (2,), "ET": (4,)}),  # BraTS 2021
    ({"background": 0, "edema": 1, "non-enhancing tumor core": 2, "Enhancing_Tumor": 3},
     {"NCR": (2,), "ED": (1,), "ET": (3,)}),
])
def test_label_names_are_recognised(labels, parts):
    scheme = label_scheme_from_labels(labels)
    assert scheme.parts == parts
    assert scheme.regions["TC"] == tuple(sorted(parts["NCR"] + parts["ET"])) and scheme.regions["ET"] == parts["ET"]
    assert normalise_name("Peritumoural Oedema") == "peritumoral edema"


def test_region_names_are_recognised_and_regions_class_order_is_checked():
    # BraTS 2023 values as regions: WT's own value (painted first, then overwritten by TC and ET) is ED = 2
    as_regions = {"background": 0, "WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
    scheme = label_scheme_from_labels(as_regions, [2, 1, 3])
    assert scheme.regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    assert scheme.parts == {"ET": (3,), "NCR": (1,), "ED": (2,)}
    with pytest.raises(LabelSchemeError, match="region 'WT' the value 1, which also belongs to the later region 'TC'"):
        label_scheme_from_labels(as_regions, [1, 2, 3])
    with pytest.raises(LabelSchemeError, match="'whole tumor' the value 3, which also belongs to the later region"):
        label_scheme_from_labels(NNUNET_BRATS_REGION_LABELS, [3, 2, 1])
    with pytest.raises(LabelSchemeError, match="one value per region"):
        label_scheme_from_labels(NNUNET_BRATS_REGION_LABELS, [1, 2])


def test_no_dataset_json_means_brats_2023():
    assert brats_2023_scheme().regions == label_scheme_from_labels(BRATS_2023_LABELS).regions
    assert label_scheme_from_dataset_json({"channel_names": CHANNELS}).parts == {"NCR": (1,), "ED": (2,), "ET": (3,)}


# ------------------------------------------------------------------------------------------ unmappable labels
def test_unmappable_labels_give_an_error_naming_them():
    scheme = label_scheme_from_labels({"background": 0, "blob": 1, "ring": 2})
    assert scheme.regions == {} and scheme.names == {1: "blob", 2: "ring"}
    with pytest.raises(InputError) as caught:
        brats_region_dice(tumour(0), tumour(1), scheme)
    message = str(caught.value)
    assert "'blob' (1)" in message and "'ring' (2)" in message and "WT, TC, ET" in message
    assert "dataset.json" in message and '"NCR": 1' in message and "whole tumor" in message  # how to fix it
    # one label not recognised: the regions it would belong to are not guessed
    partial = label_scheme_from_labels({"background": 0, "NCR": 1, "ED": 2, "ET": 3, "cavity": 4})
    assert partial.available_regions == ("TC", "ET")
    with pytest.raises(LabelSchemeError, match=r"region\(s\) WT .*'cavity' \(4\)"):
        partial.check_regions(("WT",))
    regions = label_scheme_from_labels({"background": 0, "oedema": [1, 2], "enhancing tumor": 2})
    with pytest.raises(LabelSchemeError, match=r"Could not map region\(s\) 'oedema' \[1, 2\]"):
        regions.check_regions()


def test_a_single_tumour_label_works_for_tumour_and_healthy():
    scheme = label_scheme_from_labels({"background": 0, "tumour": 1})
    assert scheme.available_regions == ("WT",)
    labels = (tumour(0) > 0).astype(np.uint8)
    reference, prediction = images(0, labels)
    results = evaluate_case(reference, prediction, labels=labels, label_scheme=scheme)
    assert {"brain", "tumour", "healthy"} <= set(results)
    assert results["tumour"]["n_voxels"] == int(labels.sum())
    assert brats_region_dice(labels, labels, scheme, regions=("WT",)) == {"WT": 1.0}
    with pytest.raises(LabelSchemeError, match=r"region\(s\) TC .*needs labels named like NCR and ET"):
        brats_region_dice(labels, labels, scheme, regions=("TC",))


def test_malformed_labels_and_values_of_another_numbering_are_refused():
    with pytest.raises(LabelSchemeError, match="distinct label values > 0"):
        label_scheme_from_labels({"background": 0, "whole tumor": [0, 1]})
    with pytest.raises(LabelSchemeError, match="same value 1"):
        label_scheme_from_labels({"background": 0, "NCR": 1, "ED": 1})
    brats_2021 = tumour(0).copy()
    brats_2021[brats_2021 == 3] = 4
    with pytest.raises(LabelSchemeError, match=r"predicted label map holds label value\(s\) \[4\]"):
        brats_region_dice(tumour(0), brats_2021)


# ------------------------------------------------------------------------------- same results in both numberings
def test_region_dice_and_metrics_are_identical_in_both_numberings():
    brats = label_scheme_from_labels(BRATS_2023_LABELS)
    nnunet = label_scheme_from_labels(NNUNET_BRATS_REGION_LABELS, NNUNET_BRATS_REGIONS_CLASS_ORDER)
    for seed in range(3):
        reference, predicted = tumour(seed), tumour(seed + 10, shift=0.8)
        dice_brats = brats_region_dice(reference, predicted, brats)
        dice_nnunet = brats_region_dice(to_nnunet(reference), to_nnunet(predicted), nnunet)
        assert dice_brats == dice_nnunet
        assert 0 < dice_brats["TC"] < 1 and 0 < dice_brats["WT"] < 1
        # a segmenter numbering its labels as Dataset137, scored against BraTS 2023 references with its own scheme
        assert brats_region_dice(reference, to_nnunet(predicted), brats, prediction_scheme=nnunet) == dice_brats
        image, prediction = images(seed, reference)
        in_brats = evaluate_case(image, prediction, labels=reference, label_scheme=brats)
        in_nnunet = evaluate_case(image, prediction, labels=to_nnunet(reference), label_scheme=nnunet)
        assert list(in_brats) == list(in_nnunet) == ["brain", "tumour", "healthy", "NCR", "ED", "ET"]
        assert in_brats == in_nnunet


def _dataset(root: Path, labels_json: dict, remap) -> Path:
    """imagesTr (T1N, T1C), labelsTr, dataset.json and T1C predictions of three 16^3 cases; label maps remapped."""
    for seed in range(3):
        case = f"case_{seed}"
        labels = tumour(seed)
        reference, prediction = images(seed, labels)
        write(root / "imagesTr" / f"{case}_0000.nii.gz", reference * 0.5 + 10 * (reference > 0))
        write(root / "imagesTr" / f"{case}_0001.nii.gz", reference)
        write(root / "labelsTr" / f"{case}.nii.gz", remap(labels))
        write(root / "pred" / f"{case}_0001.nii.gz", prediction)
        write(root / "segmentations" / f"{case}.nii.gz", remap(tumour(seed + 10, shift=0.8)))
    (root / "dataset.json").write_text(json.dumps({"channel_names": CHANNELS, "numTraining": 3,
                                                   "file_ending": ".nii.gz", **labels_json}))
    return root


COPY_SEGMENTER = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    source, output = Path(sys.argv[3]), Path(sys.argv[2])
    output.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.nii.gz"):
        shutil.copyfile(path, output / path.name)
""")


def _evaluate(root: Path, script: Path, segmentations: Path, output: str = "out", **kwargs) -> dict:
    command = f"{sys.executable} {script} {{input}} {{output}} {segmentations}"
    return evaluate_folders(root / "imagesTr", root / "pred", root / output, labels_folder=root / "labelsTr",
                            dataset_json=root / "dataset.json", segmenter=command, segmenter_sets=["real"],
                            progress=False, **kwargs)


def test_folder_evaluation_and_segmenter_check_are_identical_in_both_numberings(tmp_path):
    """The same cases, labelled in BraTS 2023 and in Dataset137 numbering (with regions), evaluated through their
    dataset.json files: identical per-region metrics and identical WT / TC / ET Dice of the segmenter check."""
    brats = _dataset(tmp_path / "brats", {"labels": BRATS_2023_LABELS}, lambda a: a)
    nnunet = _dataset(tmp_path / "nnunet", NNUNET_JSON, to_nnunet)
    assert validate_dataset(nnunet, progress=False) == []
    script = tmp_path / "copy_segmenter.py"
    script.write_text(COPY_SEGMENTER)
    in_brats = _evaluate(brats, script, brats / "segmentations")
    in_nnunet = _evaluate(nnunet, script, nnunet / "segmentations")
    assert in_brats["rows"] == in_nnunet["rows"]
    assert {r["region"] for r in in_brats["rows"]} == {"brain", "tumour", "healthy", "NCR", "ED", "ET"}
    assert in_brats["segmentation_rows"] == in_nnunet["segmentation_rows"]
    assert in_brats["downstream_segmentation"]["per_target"] == in_nnunet["downstream_segmentation"]["per_target"]
    assert all(0 < row["TC"] < 1 for row in in_brats["segmentation_rows"])
    assert in_nnunet["label_scheme"]["format"] == "nnU-Net regions"
    assert in_nnunet["label_scheme"]["regions"] == {"WT": [1, 2, 3], "TC": [2, 3], "ET": [3]}
    assert json.loads((nnunet / "out" / "summary.json").read_text())["label_scheme"]["labels"] == {
        "NCR": 2, "ED": 1, "ET": 3}
    # a Dataset137-numbered segmenter against BraTS 2023 references: right only with the segmenter's dataset.json
    mixed = _evaluate(brats, script, nnunet / "segmentations", "out_mixed",
                      segmenter_dataset_json=nnunet / "dataset.json")
    assert mixed["segmentation_rows"] == in_brats["segmentation_rows"]
    wrong = _evaluate(brats, script, nnunet / "segmentations", "out_wrong")
    assert [r["TC"] for r in wrong["segmentation_rows"]] != [r["TC"] for r in in_brats["segmentation_rows"]]


def test_segmenter_check_with_unmappable_labels_names_them(tmp_path):
    root = _dataset(tmp_path, {"labels": {"background": 0, "blob": 1, "ring": 2, "spot": 3}}, lambda a: a)
    script = tmp_path / "copy_segmenter.py"
    script.write_text(COPY_SEGMENTER)
    with pytest.raises(LabelSchemeError, match=r"'blob' \(1\), 'ring' \(2\), 'spot' \(3\)"):
        _evaluate(root, script, root / "segmentations")
    # without the segmenter the evaluation runs, per-label regions named as dataset.json names them
    summary = evaluate_folders(root / "imagesTr", root / "pred", labels_folder=root / "labelsTr",
                               dataset_json=root / "dataset.json", progress=False)
    assert {r["region"] for r in summary["rows"]} == {"brain", "tumour", "healthy", "blob", "ring", "spot"}


# ------------------------------------------------------------------------------------------------ dataset.json
def test_validator_and_dataset_json_accept_region_labels(tmp_path):
    description, problems = parse_dataset_json({"channel_names": CHANNELS, "numTraining": 1, "file_ending": ".nii.gz",
                                                **NNUNET_JSON})
    assert problems == [] and description.uses_regions
    assert description.label_values == {0, 1, 2, 3}
    assert description.labels_json() == {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                                    "enhancing tumor": 3}, "regions_class_order": [1, 2, 3]}
    assert description.label_scheme().parts == {"ET": (3,), "NCR": (2,), "ED": (1,)}
    _, problems = parse_dataset_json({"channel_names": CHANNELS, "numTraining": 1, "file_ending": ".nii.gz",
                                      "labels": NNUNET_BRATS_REGION_LABELS, "regions_class_order": [2, 1, 3]})
    assert len(problems) == 2 and "regions_class_order" in problems[0]
    root = _dataset(tmp_path, NNUNET_JSON, to_nnunet)
    assert validate_dataset(root, progress=False) == []
    assert load_dataset_json(root).label_scheme().regions["TC"] == (2, 3)
    labels, geometry = read_image(root / "labelsTr" / "case_0.nii.gz", dtype=None)
    labels[0, 0, 0] = 4  # a value no region lists
    write_image(labels, geometry, root / "labelsTr" / "case_0.nii.gz")
    assert any("label values [4] are not declared" in p for p in validate_dataset(root, progress=False))


def test_convert_brats_writes_labels_read_back_as_brats_2023(tmp_path):
    from test_convert_brats_checks import write_case

    from synthunet.dataset.convert_brats import convert_brats

    write_case(tmp_path / "brats", "BraTS-GLI-00000-000", 0)
    convert_brats(tmp_path / "brats", 12, "Labels", output_root=tmp_path / "raw", progress=False, num_processes=1)
    scheme = load_dataset_json(tmp_path / "raw" / "Dataset012_Labels").label_scheme()
    assert scheme.parts == {"NCR": (1,), "ED": (2,), "ET": (3,)}
    assert scheme.regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def test_segmenter_training_labels_and_validation_dice_follow_the_scheme():
    from synthunet.training.experiment import Experiment
    from synthunet.training.segmentation import label_dice

    experiment = Experiment("Dataset137_BraTS2021", {}, "3d_fullres", "seg", ["T1N", "T1C"], 0,
                            "SegmentationTrainer", Path("pre"), Path("res"), {"channel_names": CHANNELS, **NNUNET_JSON})
    assert experiment.labels == {"background": 0, "ED": 1, "NCR": 2, "ET": 3}
    assert experiment.num_classes == 4
    reference, predicted = tumour(0), tumour(10, shift=0.8)
    in_nnunet = label_dice(to_nnunet(reference), to_nnunet(predicted), experiment.labels, experiment.label_scheme)
    in_brats = label_dice(reference, predicted, BRATS_2023_LABELS, brats_2023_scheme())
    assert in_nnunet == in_brats
    assert set(in_brats) == {"WT", "TC", "ET", "Dice_NCR", "Dice_ED", "Dice_ET"}


def test_segmenter_check_of_a_single_tumour_label_reports_wt_and_warns(tmp_path):
    root = _dataset(tmp_path, {"labels": {"background": 0, "tumour": 1}}, lambda a: (a > 0).astype(np.uint8))
    script = tmp_path / "copy_segmenter.py"
    script.write_text(COPY_SEGMENTER)
    with pytest.warns(UserWarning, match=r"Dice for WT only; region\(s\) TC, ET cannot be mapped"):
        summary = _evaluate(root, script, root / "segmentations")
    rows = summary["segmentation_rows"]
    assert all(0 < row["WT"] < 1 and np.isnan(row["TC"]) and np.isnan(row["ET"]) for row in rows)
    assert {r["region"] for r in summary["rows"]} == {"brain", "tumour", "healthy", "label_1"}


def test_segmenter_validation_tolerates_a_class_between_the_declared_values():
    """BraTS 2021 numbering (ET = 4): the network has classes 0..4, and an argmax of 3 is in no region."""
    from synthunet.training.segmentation import label_dice

    labels = {"background": 0, "NCR": 1, "ED": 2, "ET": 4}
    reference = tumour(0)
    reference[reference == 3] = 4
    prediction = reference.copy()
    prediction[reference == 2] = 3  # the untrained class
    values = label_dice(reference, prediction, labels, label_scheme_from_labels(labels))
    assert values["ET"] == 1.0 and values["TC"] == 1.0 and 0 < values["WT"] < 1 and values["Dice_ED"] == 0.0
