"""Issue 18: weigh CVA less in the combined map when the held-out tags say the network does better.

The product's map is the geometric mean of the student's MSI map and CVA's smoothed magnitude,
``student^0.5 x cva^0.5`` (``core/detect/fusion.py``). With all training tiles the student alone
beat it where CVA is weak (WHU-CD 0.514 against 0.463, single-band 0.486 against 0.413, OMBRIA
Sentinel-1 0.545 against 0.522, seed 0), while CVA's part still carries DSIFN-CD, OMBRIA
Sentinel-2 and the SAR pairs. Candidate, fixed before this script was run on any model (session
17):

- ``tag fit weight``: for each weight w in (0, 0.25, 0.5) the map ``student^(1 - w) x cva^w``
  is cut at Otsu's threshold of its held-out changed-tagged tiles (the product's rule); a
  held-out tile is *called* changed when at least 9 of its valid pixels reach that threshold
  (what gives it a polygon after the sieve); the weight whose calls fit the held-out tags best
  (balanced accuracy of changed and unchanged) is used, ties going to the larger weight (0.5,
  the product, first). Without held-out tags (too few of a class) the weight stays 0.5. Judged
  against ``product`` (w = 0.5 at its own threshold).

``w 0`` and ``w 0.25`` (each weight for every model) are printed for information only.

Adoption rule (issue 18, fixed before the run): on the *training* tiles' pixel labels, the mean
changed-class F1 over families must rise and no family may fall by more than 0.02, **both** at
48 tags (each family's F1 averaged over seeds 0, 1, 2 first) **and** with all training tiles
(seed 0). The test tiles only report. Maps are computed on tiles (the student with MSI and flips,
as detect runs it), the CVA part as ``core/detect/fusion.py`` makes it (5 x 5 average). Usage::

    python docs/experiments/fusion_weight.py RUN SUITE DATA --budget 48 --seeds 0 1 2
    python docs/experiments/fusion_weight.py RUN SUITE DATA --budget 0 --seed 0

Outcome (session 17): dropped at both budgets (48 tags, seed means: -0.009, worst family -0.045;
all tags: -0.006, worst -0.054); BENCHMARKS.md, "Weighing CVA less".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_rules import held_out_index  # noqa: E402
from suite_runs import mean_cells, score_families, verdict  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.data.magnitude import tile_magnitude  # noqa: E402
from core.data.tilesets import TileSet  # noqa: E402
from core.detect.fusion import smoothed  # noqa: E402
from core.detect.params import DetectParams  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.eval.benchmark_data import BenchmarkData, budget_subset, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

CPU = torch.device("cpu")
WEIGHTS = (0.5, 0.25, 0.0)  # ties go to the first, the product's weight
CALL_PIXELS = 9
WINDOW = 5
RULES = {"tag fit weight": "product"}


def cva_part(data: BenchmarkData, index: np.ndarray) -> np.ndarray:
    """CVA's part of the combined map for the tiles at ``index`` (as ``fuse_tiles`` makes it)."""
    tiles = data.tiles.subset(index)
    magnitude = torch.from_numpy(tile_magnitude(tiles.before, tiles.after))[:, None]
    scale = 2.0 * torch.from_numpy(data.cva_threshold[index])[:, None, None, None]
    return (smoothed(magnitude, WINDOW) / scale).clamp(0.0, 1.0)[:, 0].numpy()


def weighted(student: np.ndarray, cva: np.ndarray, weight: float) -> np.ndarray:
    """``student^(1 - weight) x cva^weight``."""
    return np.clip(student, 0.0, 1.0) ** (1.0 - weight) * cva**weight


def call_fit(tiles: TileSet, prob: np.ndarray, threshold: float) -> float:
    """Balanced accuracy of the tile calls (at least ``CALL_PIXELS`` pixels reach the cut)."""
    changed = tiles.labels.astype(bool)
    if changed.all() or not changed.any():
        return float("nan")
    called = ((prob >= threshold) & tiles.valid).reshape(len(prob), -1).sum(1) >= CALL_PIXELS
    return float((called[changed].mean() + (~called[~changed]).mean()) / 2)


def choose_weight(held: TileSet, student: np.ndarray, cva: np.ndarray) -> tuple[float, dict]:
    """The candidate's weight and every weight's threshold, from the held-out tags only."""
    thresholds, fits = {}, {}
    for weight in WEIGHTS:
        prob = weighted(student, cva, weight)
        thresholds[weight] = otsu_on_changed_tiles(held, prob).value
        fits[weight] = call_fit(held, prob, thresholds[weight])
    if any(np.isnan(v) for v in fits.values()):
        return 0.5, thresholds
    best = max(fits.values())
    return next(w for w in WEIGHTS if fits[w] >= best - 1e-12), thresholds


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """The product's and the candidate's F1 on training and test tiles, and the chosen weight."""
    data = load_benchmark_data(
        list(family.roots), family.tile, family.bands, 0.7, seed, Callbacks()
    )
    data = budget_subset(data, budget, seed)
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    info, states = load_model(model)
    detect = DetectParams()  # the product's scales and flips
    student = make_predictor("kdmsi", info, states, model, CPU, detect.scales, detect.flip)
    parts = {}
    for part, index in (("train", data.train), ("test", data.test)):
        parts[part] = (index, predict_tiles(student, data.tiles.subset(index), CPU))
    held_index = held_out_index(data, seed)
    position = np.searchsorted(data.train, held_index)  # held-out tiles are training tiles
    held = data.tiles.subset(held_index)
    held_cva = cva_part(data, held_index)
    chosen, thresholds = choose_weight(held, parts["train"][1][position], held_cva)
    if held_index is data.train:  # no tags were held out: the product keeps its weight
        chosen = 0.5
    row = {"weight": chosen}
    for part, (index, prob) in parts.items():
        cva = cva_part(data, index)
        truth, valid = data.truth[index], data.tiles.valid[index]
        for weight in WEIGHTS:
            mask = weighted(prob, cva, weight) >= thresholds[weight]
            row[f"{part} w {weight}"] = ConfusionMatrix().update(mask, truth, valid).as_dict()["f1"]
        row[f"{part} product"] = row[f"{part} w 0.5"]
        row[f"{part} tag fit weight"] = row[f"{part} w {chosen}"]
    return row


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (weight chosen, F1 of each map on training and test tiles), the verdict."""
    keys = ["product", "tag fit weight", "w 0.25", "w 0.0"]
    head = " | ".join(f"{k}: train, test" for k in keys)
    lines = [f"| family | weight | {head} |", "|---|---|" + "---|" * len(keys)]
    for name, row in rows.items():
        cells = [f"{row[f'train {k}']:.3f}, {row[f'test {k}']:.3f}" for k in keys]
        lines.append(f"| {name} | {row['weight']} | " + " | ".join(cells) + " |")
    lines.append("| mean | | " + " | ".join(mean_cells(rows, keys)) + " |")
    for rule, base in RULES.items():
        lines.append(verdict(rows, rule, base, 4))
    return "\n".join(lines)


if __name__ == "__main__":
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
