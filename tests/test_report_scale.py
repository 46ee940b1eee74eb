"""synth_report draws ground truth, prediction and |error| on the scale the metrics compare them (issue 17).

A prediction on another intensity scale than its reference (here reference x 0.3, as a model predicting on
the dataset's Nyúl scale) is perfect for the region-mode metrics (percentile normalisation); the report
must show it so: error near zero, prediction spanning the reference's window. Before, the report drew the
prediction in the reference's raw window (nearly black) and the error in raw units (large).
"""
from __future__ import annotations

import numpy as np
import pytest

from synthunet.evaluation.cli import evaluate_main
from synthunet.evaluation.metrics import default_brain_mask, evaluate_case, region_normalise
from synthunet.evaluation.report import main as report_main
from synthunet.evaluation.report_panels import (MIN_ERROR_SCALE, intensity_window, normalisation_caption,
                                                target_panels)
from test_evaluation_folders import SHAPE, make_case, make_raw, write

FACTOR = 0.3
TOLERANCE = 0.05  # of the display window


def scaled_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1C reference, prediction = reference x FACTOR plus tiny noise in the brain, labels."""
    images, labels = make_case(seed)
    reference = images["T1C"].astype(np.float64)
    noise = np.random.default_rng(seed + 10).normal(0, 0.05, SHAPE) * (reference > 0)
    return reference, reference * FACTOR + noise, labels


def test_a_rescaled_prediction_is_drawn_like_the_reference_with_near_zero_error():
    reference, prediction, labels = scaled_case()
    brain = default_brain_mask(reference, labels)
    panels = target_panels(reference, prediction, brain)
    low, high = panels.window
    width = high - low
    assert panels.normalisation == "percentile" and width > 0
    assert panels.error[brain].max() < TOLERANCE * width
    assert panels.error[brain].max() < 0.5 * panels.error_max  # drawn dark, not stretched to full scale
    # the prediction panel is not blank: it spans the reference's window
    p_low, p_high = np.percentile(panels.prediction[brain], [0.5, 99.5])
    assert abs(p_low - low) < TOLERANCE * width and abs(p_high - high) < TOLERANCE * width
    # exactly the metric's normalisation, and the error drawn is the error the metric measures
    np.testing.assert_array_equal(panels.reference, region_normalise(reference, brain))
    np.testing.assert_array_equal(panels.prediction, region_normalise(prediction, brain))
    assert evaluate_case(reference, prediction, brain, labels)["brain"]["MAE"] == pytest.approx(
        float(panels.error[brain].mean()), rel=1e-12)


def test_normalisation_none_draws_the_images_as_given():
    reference, prediction, labels = scaled_case()
    brain = default_brain_mask(reference, labels)
    panels = target_panels(reference, prediction, brain, "none")
    np.testing.assert_array_equal(panels.reference, reference)
    np.testing.assert_array_equal(panels.prediction, prediction)
    np.testing.assert_array_equal(panels.error, np.abs(prediction - reference))
    assert panels.window == intensity_window(reference, brain)
    assert panels.error_max >= MIN_ERROR_SCALE * (panels.window[1] - panels.window[0])
    assert "'none'" in normalisation_caption("none") and "as given" in normalisation_caption("none")
    assert "'percentile'" in normalisation_caption() and "0.5-99.5 percentiles" in normalisation_caption()


@pytest.fixture
def drawn(monkeypatch):
    """Record every image matplotlib draws: (array, vmin, vmax) in drawing order."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.axes import Axes

    calls: list[tuple[np.ndarray, float, float]] = []
    original = Axes.imshow

    def imshow(self, image, *args, **kwargs):
        calls.append((np.array(image, dtype=np.float64), kwargs.get("vmin"), kwargs.get("vmax")))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", imshow)
    return calls


def _scaled_raw(tmp_path):
    images, labels, predictions, dataset_json = make_raw(tmp_path, cases=("case_a",))
    reference, prediction, _ = scaled_case()
    write(predictions / "case_a_0001.nii.gz", prediction.astype(np.float32))
    return images, labels, predictions, dataset_json, reference


def test_report_renders_the_scaled_prediction_end_to_end(tmp_path, drawn):
    images, labels, predictions, dataset_json, _ = _scaled_raw(tmp_path)
    report = tmp_path / "report"
    assert report_main(["-i", str(predictions), "-ref", str(images), "-l", str(labels), "--dataset_json",
                        str(dataset_json), "-o", str(report), "--quiet"]) == 0
    png = report / "case_a__T1C.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # columns: 3 inputs, ground truth, prediction, |error|; three views each, drawn column by column
    assert len(drawn) == 6 * 3
    for view in range(3):
        truth, (prediction, p_min, p_max), (error, _, error_max) = drawn[9 + view], drawn[12 + view], drawn[15 + view]
        width = truth[2] - truth[1]
        assert (p_min, p_max) == truth[1:] and width > 0
        np.testing.assert_allclose(prediction, truth[0], atol=TOLERANCE * width)
        assert error.max() < TOLERANCE * width < error_max
    assert "normalisation &#x27;percentile&#x27;" in (report / "index.html").read_text()


def test_report_normalisation_none_and_a_csv_of_another_normalisation(tmp_path, drawn, capsys):
    images, labels, predictions, dataset_json, reference = _scaled_raw(tmp_path)
    evaluation = tmp_path / "evaluation"
    argv = ["-i", str(predictions), "-ref", str(images), "-l", str(labels), "--dataset_json", str(dataset_json),
            "--quiet", "--per_case_csv", str(evaluation / "per_case.csv")]
    assert evaluate_main(["-ref", str(images), "-pred", str(predictions), "-l", str(labels), "--dataset_json",
                          str(dataset_json), "-o", str(evaluation), "--normalisation", "none", "--quiet"]) == 0
    assert report_main([*argv, "-o", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "per_case.csv" in err and "normalisation none" in err and "--normalisation none" in err
    assert not list((tmp_path / "refused").glob("*.png"))
    drawn.clear()
    assert report_main([*argv, "-o", str(tmp_path / "report"), "--normalisation", "none"]) == 0
    brain = default_brain_mask(reference, make_case(0)[1])
    from synthunet.evaluation.report import slice_centre

    z = slice_centre(brain, make_case(0)[1])[0]
    np.testing.assert_allclose(drawn[9][0], reference[z].astype(np.float32))  # axial ground truth, as given
    assert "normalisation &#x27;none&#x27;" in (tmp_path / "report" / "index.html").read_text()
