"""Issue 18: does Suggest beat random tags once its held-out tags come from the random half only?

Session 16 measured Suggest against random tags at 48 tags (seed 0, the 5 families with more than
48 training tiles): -0.015 on the test tiles' product F1, with recall up on all 5 families and
the combined map's threshold lower where F1 fell. The reading then: the fifth of the tags held
out for the epoch, threshold and map choices now includes tiles chosen *because* the first model
was unsure of them, so Otsu on the held-out changed tiles cuts lower. The candidate, fixed before
this run (session 17, before any of its models was trained): hold out tags from the randomly
tagged half only, same count per class, same first round and the same suggested tiles (the code
of commit 22ecd93, a ``holdable`` mask through ``stratified_split``, ``split_tags`` and
``train_model``; removed again when the candidate was dropped).

Three settings per family, each the product map (``kdmsi-cva`` whole-pair maps that ``detect``
wrote in the suite run, cut at the threshold ``detect`` reported):

- ``random``: 48 random tags (folder ``48``);
- ``suggest, held out from all``: session 16's Suggest (folder ``48_suggest_all``, a link);
- ``suggest, held out from random``: the candidate (folder ``48_suggest``).

Rules, fixed before the run: the candidate replaces Suggest's current split when issue 18's
adoption rule holds against ``suggest, held out from all`` on the *training* tiles' pixel labels
(mean changed-class F1 over families rises, no family falls by more than 0.02). Whether the kept
Suggest beats random is then judged the same way against ``random`` (the issue's goal). Test
tiles only report. Usage::

    python docs/experiments/suggest_rules.py RUN SUITE DATA --seed 0 --only FAMILY ...

(``RUN`` holds the three folders per family; the 5 families with more than 48 training tiles.)

Outcome (session 17, seed 0): the candidate lost 0.015 on the training tiles' mean, worst family
-0.039: dropped (BENCHMARKS.md, "Suggest's held-out tags from the random half only").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_runs import mean_cells, score_families, verdict  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.data.datasets import find_pairs  # noqa: E402
from core.eval.benchmark_data import BenchmarkData, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.eval.whole_pair import WHOLE_PAIR_METHODS, read_map, tiles_from_maps  # noqa: E402

SETTINGS = {
    "random": "",
    "suggest, held out from all": "_suggest_all",
    "suggest, held out from random": "_suggest",
}
RULES = {
    "suggest, held out from random": "suggest, held out from all",
    "suggest, held out from all": "random",
}
COMBINED_ROW = next(
    name for name, (method, _) in WHOLE_PAIR_METHODS.items() if method == "kdmsi-cva"
)


def product_f1(
    family: Family, seed_dir: Path, data: BenchmarkData, parts: dict | None = None
) -> dict[str, float]:
    """F1 of the run's combined whole-pair map on the training and the test tiles.

    ``parts`` (name: tile indices) scores other sets of tiles instead.
    """
    result = json.loads((seed_dir / "result.json").read_text())
    threshold = next(r["threshold"] for r in result["rows"] if r["method"] == COMBINED_ROW)
    maps = {}
    for root in family.roots:
        for files in find_pairs(root):
            path = seed_dir / "detect" / "kdmsi-cva" / f"{root.name}_{files.name}_kdmsi-cva.tif"
            maps[files.key] = read_map(path)
    prob = tiles_from_maps(data, maps)
    scores = {}
    for part, index in (parts or {"train": data.train, "test": data.test}).items():
        matrix = ConfusionMatrix().update(
            prob[index] >= threshold, data.truth[index], data.tiles.valid[index]
        )
        scores[part] = matrix.as_dict()["f1"]
    scores["threshold"] = threshold
    return scores


def family_row(
    family: Family, run: Path, budget: int, seed: int, settings: dict[str, str] = SETTINGS
) -> dict[str, float]:
    """Each setting's product F1 on all training tiles and on the test tiles, and its threshold.

    ``settings`` maps a setting's name to its run folder's suffix (``48`` + suffix).
    """
    data = load_benchmark_data(
        list(family.roots), family.tile, family.bands, 0.7, seed, Callbacks()
    )
    row = {}
    for name, suffix in settings.items():
        seed_dir = run / slug(family.name) / f"{budget}{suffix}" / f"seed{seed}"
        scores = product_f1(family, seed_dir, data)
        row[f"train {name}"], row[f"test {name}"] = scores["train"], scores["test"]
        row[f"{name} threshold"] = scores["threshold"]
    return row


def report(
    rows: dict[str, dict[str, float]],
    settings: dict[str, str] = SETTINGS,
    rules: dict[str, str] = RULES,
) -> str:
    """A markdown table (each setting's train F1, test F1 and threshold) and the verdicts."""
    head = " | ".join(f"{name}: train F1, test F1, threshold" for name in settings)
    lines = [f"| family | {head} |", "|---|" + "---|" * len(settings)]
    for family, row in rows.items():
        cells = [
            f"{row[f'train {n}']:.3f}, {row[f'test {n}']:.3f}, {row[f'{n} threshold']:.3f}"
            for n in settings
        ]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines.append("| mean (train, test) | " + " | ".join(mean_cells(rows, list(settings))) + " |")
    lines.extend(verdict(rows, rule, base, 4) for rule, base in rules.items())
    return "\n".join(lines)


if __name__ == "__main__":
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
