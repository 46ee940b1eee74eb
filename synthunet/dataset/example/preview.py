"""A PNG that shows the four sequences and the labels of one phantom case (axial and coronal)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from synthunet.dataset.example.phantom import CHANNELS, PhantomCase
from synthunet.utilities.atomic_io import atomic_path

LABEL_COLOURS = {1: (0.9, 0.1, 0.1), 2: (0.2, 0.8, 0.2), 3: (1.0, 0.85, 0.0)}  # NCR red, ED green, ET yellow


def _display_range(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    values = image[mask > 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _label_overlay(labels: np.ndarray) -> np.ndarray:
    rgba = np.zeros(labels.shape + (4,), dtype=np.float32)
    for value, colour in LABEL_COLOURS.items():
        rgba[labels == value] = (*colour, 0.55)
    return rgba


def _views(case: PhantomCase) -> list[tuple[str, tuple, float]]:
    """(name, index into the (z, y, x) arrays, pixel aspect) for an axial and a coronal slice through the tumour."""
    tumour = case.labels > 0
    source = tumour if tumour.any() else case.mask > 0
    z = int(np.argmax(source.sum(axis=(1, 2))))
    y = int(np.argmax(source.sum(axis=(0, 2))))
    sz, sy, sx = case.geometry.spacing
    return [("axial", (z, slice(None), slice(None)), sy / sx), ("coronal", (slice(None), y, slice(None)), sz / sx)]


def save_preview(case: PhantomCase, path: Path | str, dpi: int = 80) -> Path:
    """Save a 2 x 5 panel (T1N, T1C, T2W, T2F, labels on T2F) in radiological orientation; atomic write."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    path = Path(path)
    views = _views(case)
    figure, axes = plt.subplots(len(views), len(CHANNELS) + 1, figsize=(12.5, 5.6), facecolor="black")
    for row, (view, index, aspect) in enumerate(views):
        for column, channel in enumerate((*CHANNELS, "labels")):
            axis = axes[row, column]
            source = case.images["T2F" if channel == "labels" else channel]
            low, high = _display_range(source, case.mask)
            # Arrays run (superior, anterior, right); show anterior/superior up and the patient's right on the left.
            picture = source[index][:, ::-1]
            axis.imshow(picture, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect,
                        interpolation="nearest")
            if channel == "labels":
                axis.imshow(_label_overlay(case.labels[index][:, ::-1]), origin="lower", aspect=aspect,
                            interpolation="nearest")
            axis.set_axis_off()
            if row == 0:
                title = "labels on T2F" if channel == "labels" else channel
                axis.set_title(title, color="white", fontsize=11)
        axes[row, 0].text(-0.05, 0.5, view, transform=axes[row, 0].transAxes, color="white", rotation=90,
                          va="center", ha="right", fontsize=11)
    spacing = "x".join(f"{s:g}" for s in case.geometry.spacing)
    figure.suptitle(f"{case.case_id} ({case.parameters.get('tumour', {}).get('kind', '')} tumour, {spacing} mm; "
                    f"red NCR, green ED, yellow ET)", color="white", fontsize=11)
    figure.tight_layout(rect=(0.02, 0, 1, 0.95))
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, facecolor="black", format="png")
    finally:
        plt.close(figure)
    return path
