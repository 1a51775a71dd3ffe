"""Issue 18: post-training rules that may transfer better, scored on the models of a suite run.

The product cuts the student's MSI map at Otsu's threshold over the held-out changed-tagged tiles
(``core/train/threshold_choice.py``): rule ``otsu``, the baseline. Two candidates, each fixed
before this script was run on any family:

- ``bounded``: tiles tagged unchanged say where change must not appear, and the baseline ignores
  them. threshold = max(Otsu as above, the 99th percentile of the map over the held-out
  unchanged-tagged tiles), so at most 1 % of those pixels are called change.
- ``with cva``: the learned map combined with the unsupervised cue, sqrt(student x CVA), where
  CVA is the pair's change magnitude scaled so that its own Otsu threshold sits at 0.5 (as the
  benchmark's CVA row, clipped to [0, 1]); thresholded by Otsu on the held-out changed-tagged
  tiles of the combined map. Adopted in session 12 (method ``kdmsi-cva``); the baseline of later
  candidates.
- ``cva 3x3`` (session 12): as ``with cva``, but the change magnitude is averaged over 3 x 3
  pixels before it is scaled: CVA's pixel noise (speckle, co-registration edges) turns into
  thousands of one-pixel polygons in the combined map, which its smooth network half cannot
  cancel. Judged against ``with cva``. Adopted in session 12; the baseline of later candidates.
- ``sieve 9`` (session 13): the ``cva 3x3`` map cut at its threshold, then every change region
  (4-connected, as ``vectorize`` makes polygons) of fewer than 9 pixels removed: about 30
  regions per tile are still far more than a user wants as polygons. Judged against ``cva 3x3``.
  Measured per tile, so a region cut by a tile's edge counts only its part inside the tile.
- ``cva 5x5`` (session 13): as ``cva 3x3`` with a 5 x 5 average. Judged against ``cva 3x3``.
- ``5x5 sieve 9`` (session 13, fixed after ``sieve 9`` and ``cva 5x5`` were each adopted
  against ``cva 3x3``, before this one's run): both together. Judged against ``cva 5x5``.
  Adopted in session 13 (the product since then); the baseline of later candidates.
- ``tag fit`` (session 13): the product's precision is its weak point and the F1 at the
  ground-truth-best threshold is far above the F1 at Otsu's. The held-out tags of *both* kinds
  say which threshold fits: at threshold t a held-out tile is called changed when at least 9 of
  its pixels reach t (what would give it a polygon); the balanced accuracy of those calls
  against the tags is measured for t in 0.01, 0.02, ..., 0.99 and Otsu's threshold itself, and
  of the thresholds reaching the best, the one closest to Otsu's is used (Otsu's own when it
  fits the tags as well as any). The ``5x5 sieve 9`` map and sieve; judged against it.
  Dropped in session 13.
- ``min error`` (session 13): change is a small share of a changed tile's pixels, and Otsu's
  cut, which assumes classes of similar size and spread, then falls into the background's tail:
  high recall, low precision. Kittler and Illingworth's minimum error threshold models the two
  classes as Gaussians with their own shares and spreads: on the same 256-bin histogram of the
  held-out changed tiles' pixels of the ``5x5 sieve 9`` map, the cut minimising
  P0 ln(s0 / P0) + P1 ln(s1 / P1) among cuts leaving each class at least 1 % of the pixels and a
  spread of at least one bin (Otsu's threshold when none does). Same map and sieve; judged
  against ``5x5 sieve 9``.

Tags only; no pixel label chooses anything. Adoption rule (issue 18, fixed before the run), for
each candidate separately: judged on the *training* tiles' pixel labels, the mean changed-class F1
over families must rise and no family may fall by more than 0.02. The test tiles only report.

It reuses the models of a transfer-suite run (``kdmsi benchmark --suite ... --budgets B --seeds
S --out RUN.json``, whose models are ``RUN/<family>/<budget>/seed<S>/model.pt``), rebuilds the
same tiles, splits and held-out tags (everything is seeded), and scores every rule on the same
maps. Usage::

    python docs/experiments/map_rules.py RUN resources/benchmark-suite.json DATA --budget 48
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_runs import score_families, verdict  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.data.magnitude import tile_magnitude  # noqa: E402
from core.data.tilesets import TileSet  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.detect.tiled import Predictor  # noqa: E402
from core.eval.benchmark_data import (  # noqa: E402
    BenchmarkData,
    budget_subset,
    load_benchmark_data,
)
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.train.pipeline import MIN_HELD_OUT_PER_CLASS  # noqa: E402
from core.train.selection import stratified_split  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

QUANTILE = 0.99
BASELINES = {
    "bounded": "otsu",
    "with cva": "otsu",
    "cva 3x3": "with cva",
    "sieve 9": "cva 3x3",
    "cva 5x5": "cva 3x3",
    "5x5 sieve 9": "cva 5x5",
    "tag fit": "5x5 sieve 9",
    "min error": "5x5 sieve 9",
}
SIEVE = 9
CPU = torch.device("cpu")


def unchanged_bound(tiles: TileSet, prob: np.ndarray) -> float:
    """The ``QUANTILE`` of the map over the valid pixels of the unchanged-tagged tiles."""
    unchanged = ~tiles.labels.astype(bool)
    pixels = prob[unchanged][tiles.valid[unchanged]]
    return float(np.quantile(pixels, QUANTILE)) if pixels.size else 0.0


def tag_fit(tiles: TileSet, prob: np.ndarray, otsu: float) -> float:
    """The threshold closest to ``otsu`` among those whose tile calls best fit the tags."""
    changed = tiles.labels.astype(bool)
    if changed.all() or not changed.any():
        return otsu
    grid = np.unique(np.append(np.arange(1, 100) / 100, otsu))
    above = np.stack([((prob >= t) & tiles.valid).reshape(len(prob), -1).sum(1) for t in grid])
    called = above >= SIEVE  # [thresholds, tiles]
    score = (called[:, changed].mean(1) + (~called[:, ~changed]).mean(1)) / 2
    best = grid[score >= score.max() - 1e-12]
    return float(best[np.argmin(np.abs(best - otsu))])


def minimum_error(tiles: TileSet, prob: np.ndarray, otsu: float) -> float:
    """Kittler and Illingworth's threshold of the changed tiles' pixels (``otsu`` if none fits)."""
    changed = tiles.labels.astype(bool)
    pixels = prob[changed][tiles.valid[changed]]
    hist = np.histogram(pixels, bins=256, range=(0.0, 1.0))[0].astype(np.float64)
    if hist.sum() == 0:
        return otsu
    centers, width = (np.arange(256) + 0.5) / 256, 1 / 256
    share0 = np.cumsum(hist) / hist.sum()
    share1 = 1 - share0
    sum0, square0 = np.cumsum(hist * centers), np.cumsum(hist * centers**2)
    n0, n1 = np.cumsum(hist), hist.sum() - np.cumsum(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean0, mean1 = sum0 / n0, (sum0[-1] - sum0) / n1
        var0 = square0 / n0 - mean0**2
        var1 = (square0[-1] - square0) / n1 - mean1**2
        cost = share0 * np.log(np.sqrt(var0) / share0) + share1 * np.log(np.sqrt(var1) / share1)
    fits = (share0 >= 0.01) & (share1 >= 0.01) & (var0 >= width**2) & (var1 >= width**2)
    if not fits.any():
        return otsu
    return float((np.argmin(np.where(fits, cost, np.inf)) + 1) / 256)


def f1(mask: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Changed-class F1 of ``mask``."""
    return ConfusionMatrix().update(mask, truth, valid).as_dict()["f1"]


def sieved(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """``mask`` without its change regions (4-connected, per tile) under ``min_pixels``."""
    from scipy import ndimage  # the experiment's own need; not a kdmsi dependency

    out = mask.copy()
    for tile in out:
        labels, _count = ndimage.label(tile)
        sizes = np.bincount(labels.ravel())
        tile[(sizes < min_pixels)[labels] & (labels > 0)] = False
    return out


def held_out_index(data: BenchmarkData, seed: int) -> np.ndarray:
    """Indices (into the tile set) of the training tags held out, as ``train_model`` splits them."""
    train_labels = data.tiles.labels[data.train]
    _fit, held = stratified_split(train_labels, 0.2, seed)
    counts = np.bincount(train_labels[held].astype(int), minlength=2)
    return data.train[held] if counts.min() >= MIN_HELD_OUT_PER_CLASS else data.train


def maps(data: BenchmarkData, index: np.ndarray, predictor: Predictor) -> dict[str, np.ndarray]:
    """The student's map and its combination with CVA for the tiles at ``index``."""
    tiles = data.tiles.subset(index)
    student = predict_tiles(predictor, tiles, CPU)
    scale = 2 * data.cva_threshold[index, None, None]
    magnitude = tile_magnitude(tiles.before, tiles.after)
    cva = np.clip(magnitude / scale, 0, 1)
    smoothed = {}
    for size in (3, 5):
        pooled = F.avg_pool2d(
            torch.from_numpy(magnitude)[:, None], size, 1, size // 2, count_include_pad=False
        )
        smoothed[size] = np.clip(pooled[:, 0].numpy() / scale, 0, 1)
    return {
        "student": student,
        "with cva": np.sqrt(student * cva),
        "cva 3x3": np.sqrt(student * smoothed[3]),
        "cva 5x5": np.sqrt(student * smoothed[5]),
    }


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """Every rule's threshold and F1 (training and test tiles) for one family's model."""
    quiet = Callbacks()
    data = load_benchmark_data(list(family.roots), family.tile, family.bands, 0.7, seed, quiet)
    data = budget_subset(data, budget, seed)
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    info, states = load_model(model)
    predictor = make_predictor("kdmsi", info, states, model, CPU)
    index = held_out_index(data, seed)
    held, held_maps = data.tiles.subset(index), maps(data, index, predictor)
    otsu = otsu_on_changed_tiles(held, held_maps["student"]).value
    smooth = otsu_on_changed_tiles(held, held_maps["cva 3x3"]).value
    wider = otsu_on_changed_tiles(held, held_maps["cva 5x5"]).value
    rules = {  # rule -> (map, threshold, smallest region kept in pixels)
        "otsu": ("student", otsu, 0),
        "bounded": ("student", max(otsu, unchanged_bound(held, held_maps["student"])), 0),
        "with cva": ("with cva", otsu_on_changed_tiles(held, held_maps["with cva"]).value, 0),
        "cva 3x3": ("cva 3x3", smooth, 0),
        "sieve 9": ("cva 3x3", smooth, SIEVE),
        "cva 5x5": ("cva 5x5", wider, 0),
        "5x5 sieve 9": ("cva 5x5", wider, SIEVE),
        "tag fit": ("cva 5x5", tag_fit(held, held_maps["cva 5x5"], wider), SIEVE),
        "min error": ("cva 5x5", minimum_error(held, held_maps["cva 5x5"], wider), SIEVE),
    }
    row = {f"{rule} threshold": threshold for rule, (_, threshold, _) in rules.items()}
    for part, part_index in (("train", data.train), ("test", data.test)):
        part_maps = maps(data, part_index, predictor)
        truth, valid = data.truth[part_index], data.tiles.valid[part_index]
        for rule, (name, threshold, min_pixels) in rules.items():
            mask = part_maps[name] >= threshold
            mask = sieved(mask, min_pixels) if min_pixels else mask
            row[f"{part} {rule}"] = f1(mask, truth, valid)
            row[f"{part} {rule} pieces"] = pieces(mask)
    return row


def pieces(mask: np.ndarray) -> float:
    """Mean number of connected change regions (8-connected) per tile: what become polygons."""
    from scipy import ndimage  # the experiment's own need; not a kdmsi dependency

    return float(np.mean([ndimage.label(m, np.ones((3, 3)))[1] for m in mask]))


def main() -> None:
    """Score both rules on every family of the suite run and apply the adoption rule."""
    score_families(__doc__.splitlines()[0], family_row, report)


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (F1 per family and rule, training and test tiles) and each verdict."""
    rules = tuple(["otsu", *BASELINES])
    lines = [
        "| family | " + " | ".join(f"train {r}" for r in rules) + " | "
        + " | ".join(f"test {r}" for r in rules) + " |",
        "|---|" + "---|" * (2 * len(rules)),
    ]  # fmt: skip
    for name, row in {**rows, "mean": mean_row(rows)}.items():
        cells = [f"{row[f'{part} {r}']:.3f}" for part in ("train", "test") for r in rules]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mean = mean_row(rows)
    lines.append(
        "\nchange regions per test tile (mean over families): "
        + ", ".join(f"{r} {mean[f'test {r} pieces']:.1f}" for r in rules)
    )
    for rule in rules[1:]:
        base = BASELINES[rule]
        lines.append(verdict(rows, rule, base))
    return "\n".join(lines)


def mean_row(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean over families of every value."""
    keys = next(iter(rows.values()))
    return {key: float(np.mean([row[key] for row in rows.values()])) for key in keys}


if __name__ == "__main__":
    main()
