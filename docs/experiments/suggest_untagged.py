"""Issue 18, after the fact: Suggest against random tags on the training tiles neither one tagged.

Read after ``suggest_peaks.py`` (session 22), and not part of its pre-registered rule. The
rule scores all training tiles of the split, tagged or not; for a comparison of *which* tiles
get tagged that measure is biased towards a strategy that tags the tiles the first model gets
most wrong, since those tiles are then taught directly (``suggest-peaks`` tags the first model's
loudest false alarms). Here both settings are scored on the same pixels: the training tiles
that neither the 48 random tags nor the 48 of ``suggest-peaks`` include (its tagged set is
rebuilt from the run's first-round model, as the benchmark chose it; the class counts are
checked against the run's). Usage::

    python docs/experiments/suggest_untagged.py RUN SUITE DATA --seeds 0 1 2 --only FAMILY ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suggest_rules import product_f1  # noqa: E402
from suite_runs import score_families, table_lines, train_test, verdict  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.eval.benchmark_data import budget_subset, load_benchmark_data  # noqa: E402
from core.eval.strategies import choose_tagged_tiles  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.train.trainer import TrainParams  # noqa: E402

SETTINGS = {"random": "", "suggest-peaks": "_suggest_peaks"}
RULES = {"suggest-peaks": "random"}


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """Both settings' product F1 on the training tiles neither tagged (and on the test tiles)."""
    data = load_benchmark_data(
        list(family.roots), family.tile, family.bands, 0.7, seed, Callbacks()
    )
    peaks_dir = run / slug(family.name) / f"{budget}_suggest_peaks" / f"seed{seed}"
    peaks = choose_tagged_tiles(
        data, budget, "suggest-peaks", TrainParams(seed=seed), tuple(family.bands or ()),
        peaks_dir, torch.device("cpu"), Callbacks(), reuse=True,
    ).train  # fmt: skip
    counts = json.loads((peaks_dir / "result.json").read_text())["data"]["train"]
    labels = data.tiles.labels[peaks]
    assert counts == {"changed": int(labels.sum()), "unchanged": int((labels == 0).sum())}
    random = budget_subset(data, budget, seed).train
    untagged = np.setdiff1d(data.train, np.union1d(peaks, random))
    row = {"untagged tiles": float(len(untagged))}
    for name, suffix in SETTINGS.items():
        seed_dir = run / slug(family.name) / f"{budget}{suffix}" / f"seed{seed}"
        scores = product_f1(family, seed_dir, data, {"train": untagged, "test": data.test})
        row[f"train {name}"], row[f"test {name}"] = scores["train"], scores["test"]
    return row


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (untagged training tiles' F1, test F1) and the rule's sentence."""
    tiles = ("tiles", lambda row: f"{row['untagged tiles']:.0f}")
    lines = table_lines(rows, list(SETTINGS), "untagged, test", train_test, tiles)
    lines.extend(verdict(rows, rule, base, 4) for rule, base in RULES.items())
    return "\n".join(lines)


if __name__ == "__main__":
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
