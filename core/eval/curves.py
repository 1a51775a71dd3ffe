"""Learning curves of the transfer suite: changed-class F1 against the number of tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.eval.suite import slug
from core.eval.whole_pair import PRODUCT_ROW  # what a user gets: kdmsi train, then detect


def curve_points(
    per_setting: dict[str, list[dict]], method: str, strategy: str = "random"
) -> tuple[list[int], list[float]]:
    """(tags, mean F1 over seeds) of one method at every budget of one family, by tag count.

    Settings of another strategy than ``strategy`` are left out (all tags count as random).
    """
    points = []
    for key, runs in per_setting.items():
        if (key.partition(" ")[2] or "random") != strategy:
            continue
        values = [r["metrics"]["f1"] for run in runs for r in run["rows"] if r["method"] == method]
        if values and runs:
            tags = sum(runs[0]["data"]["train"].values())
            points.append((tags, float(np.mean(values))))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def write_learning_curves(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """One PNG per family in ``out_dir``: each method's F1 against the number of tagged tiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for family, per_setting in results["families"].items():
        methods = []
        for runs in per_setting.values():
            for run in runs:
                methods += [r["method"] for r in run["rows"] if r["method"] not in methods]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for method in methods:
            tags, f1 = curve_points(per_setting, method)
            ax.plot(tags, f1, marker="o", label=method)
        product = PRODUCT_ROW if PRODUCT_ROW in methods else methods[-1]
        tags, f1 = curve_points(per_setting, product, "suggest")
        if tags:
            ax.plot(
                tags, f1, linestyle="none", marker="*", markersize=11, label=f"{product}, suggest"
            )
        ax.set(title=family, xlabel="tagged training tiles", ylabel="changed-class F1")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"{slug(family)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
