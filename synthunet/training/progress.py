"""Training log: per-epoch metric lists (saved in checkpoints), a text log and the progress plot."""
from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path

from synthunet.utilities.atomic_io import atomic_path

LOG_FILE = "training_log.txt"
PLOT_FILE = "progress.png"

#: panels of progress.png: (title, keys on the left axis, keys on the right axis); training loss parts
#: (``train_*`` other than ``train_loss``) are added to the loss panel
PANELS = (("loss", ("train_loss", "val_loss"), ()),
          ("validation patches (inside the brain)", ("val_ssim",), ("val_mae",)),
          ("learning rate", ("lr",), ()),
          ("time per epoch", ("epoch_time_s",), ("data_wait_fraction",)))


class TrainingLog:
    """Collects one value per epoch and key; writes ``training_log.txt`` and ``progress.png``.

    Only the process with ``enabled=True`` (rank 0) writes files.
    """

    def __init__(self, output_folder: Path | str, enabled: bool = True, echo: bool = True) -> None:
        self.output_folder = Path(output_folder)
        self.enabled = enabled
        self.echo = echo
        self.metrics: dict[str, list[float]] = {}
        #: the panels of progress.png (a recipe with other validation metrics sets its own)
        self.panels = PANELS

    def print(self, *parts: object) -> None:
        """Timestamped line to stdout and the text log."""
        if not self.enabled:
            return
        line = f"{datetime.now():%Y-%m-%d %H:%M:%S}: " + " ".join(str(p) for p in parts)
        if self.echo:
            print(line, file=sys.stdout, flush=True)
        self.output_folder.mkdir(parents=True, exist_ok=True)
        with open(self.output_folder / LOG_FILE, "a") as handle:
            handle.write(line + "\n")

    def log(self, epoch: int, key: str, value: float) -> None:
        """Set ``key`` for ``epoch`` (lists are padded with NaN if an epoch was skipped)."""
        values = self.metrics.setdefault(key, [])
        while len(values) <= epoch:
            values.append(float("nan"))
        values[epoch] = float(value)

    def state_dict(self) -> dict:
        return {k: list(v) for k, v in self.metrics.items()}

    def load_state_dict(self, state: dict) -> None:
        self.metrics = {k: [float(x) for x in v] for k, v in state.items()}

    def plot(self) -> None:
        """Write ``progress.png`` (matplotlib Agg, atomic)."""
        if not self.enabled or not self.metrics:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(len(self.panels), 1, figsize=(10, 3.2 * len(self.panels)), sharex=True)
        for axis, (title, left, right) in zip(axes, self.panels):
            if title == "loss":
                left = left + tuple(sorted(k for k in self.metrics if k.startswith("train_") and k != "train_loss"))
            twin = axis.twinx() if any(k in self.metrics for k in right) else None
            colour = 0
            for target, keys in ((axis, left), (twin, right)):
                for key in (k for k in keys if k in self.metrics):
                    values = self.metrics[key]
                    target.plot(range(len(values)), values, "-" if target is axis else "--", marker=".",
                                color=f"C{colour}", label=key)
                    colour += 1
            axis.set_ylabel(", ".join(k for k in left if k in self.metrics))
            if twin is not None:
                twin.set_ylabel(", ".join(k for k in right if k in self.metrics))
            if title == "learning rate" and all(v > 0 for v in self.metrics.get("lr", [0]) if not math.isnan(v)):
                axis.set_yscale("log")
            handles = [h for a in (axis, twin) if a is not None for h in a.get_legend_handles_labels()[0]]
            if handles:
                axis.legend(handles=handles, loc="best", fontsize=8)
            axis.set_title(title)
        axes[-1].set_xlabel("epoch")
        figure.subplots_adjust(left=0.09, right=0.9, top=0.96, bottom=0.05, hspace=0.3)  # tight_layout is slow
        self.output_folder.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(self.output_folder / PLOT_FILE) as temporary:
                figure.savefig(temporary, format="png", dpi=72)
        finally:
            plt.close(figure)
