"""The run folder's training log: one CSV row per epoch and a PNG plot of the curves."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURVE_SECONDS = 15.0  # with a few tags an epoch lasts seconds: drawing each one cost ~10 %


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the epoch rows (rewritten whole each epoch, so a resumed run stays consistent)."""
    if not rows:
        return
    fields = list(rows[0])
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def plot_curves(path: Path, rows: list[dict[str, Any]]) -> None:
    """Plot the losses and the validation AUC per epoch into a PNG."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("teacher_bce", "distill"):
        ax_loss.plot(epochs, [r[key] for r in rows], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key in ("val_auc_student", "val_auc_teacher"):
        ax_auc.plot(epochs, [r[key] for r in rows], marker="o", label=key)
    ax_auc.set_xlabel("epoch")
    ax_auc.set_ylabel("image-level AUC (held-out tags)")
    ax_auc.set_ylim(0, 1.02)
    ax_auc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@dataclass
class CurvePlot:
    """The curves' PNG, drawn again at most every ``seconds`` and always when asked to finish.

    Attributes:
        path: the PNG file.
        seconds: the least time between two drawings.
    """

    path: Path
    seconds: float = CURVE_SECONDS
    _drawn: float = -math.inf

    def update(self, rows: list[dict[str, Any]], final: bool = False) -> bool:
        """Draw ``rows`` if ``final`` or ``seconds`` have passed since the last drawing.

        Returns:
            Whether the PNG was drawn.
        """
        now = time.monotonic()
        if not final and now - self._drawn < self.seconds:
            return False
        plot_curves(self.path, rows)
        self._drawn = now
        return True
