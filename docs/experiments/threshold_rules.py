"""Issue 18: does a threshold that also listens to the *unchanged* tags transfer better?

The product cuts the student's MSI map at Otsu's threshold over the held-out changed-tagged tiles
(``core/train/threshold_choice.py``). Tiles tagged unchanged say where change must not appear, and
that rule ignores them. The candidate, fixed before this script was run on any family:

    threshold = max(Otsu on the held-out changed-tagged tiles,
                    the 99th percentile of the map over the held-out unchanged-tagged tiles)

so that at most 1 % of the pixels of unchanged-tagged tiles are called change. Tags only; no pixel
label chooses anything.

Adoption rule (issue 18, fixed before the run): judged on the *training* tiles' pixel labels, the
mean changed-class F1 over families must rise and no family may fall by more than 0.02. The test
tiles only report.

It reuses the models of a transfer-suite run (``kdmsi benchmark --suite ... --budgets B --seeds
S --out RUN.json``, whose models are ``RUN/<family>/<budget>/seed<S>/model.pt``), rebuilds the
same tiles, splits and held-out tags (everything is seeded), and scores both rules on the same
maps. Usage::

    python docs/experiments/threshold_rules.py RUN resources/benchmark-suite.json DATA --budget 48
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.callbacks import Callbacks  # noqa: E402
from core.data.tilesets import TileSet  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.eval.benchmark_data import budget_subset, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, load_families, slug  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.train.pipeline import split_tags  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

QUANTILE = 0.99
CPU = torch.device("cpu")


def unchanged_bound(tiles: TileSet, prob: np.ndarray) -> float:
    """The ``QUANTILE`` of the map over the valid pixels of the unchanged-tagged tiles."""
    unchanged = ~tiles.labels.astype(bool)
    pixels = prob[unchanged][tiles.valid[unchanged]]
    return float(np.quantile(pixels, QUANTILE)) if pixels.size else 0.0


def f1(prob: np.ndarray, truth: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Changed-class F1 of ``prob >= threshold``."""
    return ConfusionMatrix().update(prob >= threshold, truth, valid).as_dict()["f1"]


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """Both rules' thresholds and F1 (training and test tiles) for one family's model."""
    quiet = Callbacks()
    data = load_benchmark_data(list(family.roots), family.tile, family.bands, 0.7, seed, quiet)
    data = budget_subset(data, budget, seed)
    train_tiles = data.tiles.subset(data.train)
    _fit, held = split_tags(train_tiles, 0.2, seed, quiet)
    held = held if held is not None else train_tiles
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    info, states = load_model(model)
    predictor = make_predictor("kdmsi", info, states, model, CPU)
    held_prob = predict_tiles(predictor, held, CPU)
    otsu = otsu_on_changed_tiles(held, held_prob).value
    bound = max(otsu, unchanged_bound(held, held_prob))
    row = {"otsu": otsu, "bounded": bound}
    for part, index in (("train", data.train), ("test", data.test)):
        tiles = data.tiles.subset(index)
        prob = predict_tiles(predictor, tiles, CPU)
        truth, valid = data.truth[index], tiles.valid
        row[f"{part} otsu"] = f1(prob, truth, valid, otsu)
        row[f"{part} bounded"] = f1(prob, truth, valid, bound)
    return row


def main() -> None:
    """Score both rules on every family of the suite run and apply the adoption rule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("suite", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="family names to score (default: all)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = {}
    for family in load_families(args.suite, args.data_root, Callbacks()):
        if args.only and family.name not in args.only:
            continue
        rows[family.name] = family_row(family, args.run, args.budget, args.seed)
        r = rows[family.name]
        print(
            f"| {family.name} | {r['otsu']:.3f} | {r['bounded']:.3f} | {r['train otsu']:.3f} | "
            f"{r['train bounded']:.3f} | {r['test otsu']:.3f} | {r['test bounded']:.3f} |",
            flush=True,
        )
    gain = [r["train bounded"] - r["train otsu"] for r in rows.values()]
    mean = {k: np.mean([r[k] for r in rows.values()]) for k in next(iter(rows.values()))}
    print(
        f"| mean | | | {mean['train otsu']:.3f} | {mean['train bounded']:.3f} | "
        f"{mean['test otsu']:.3f} | {mean['test bounded']:.3f} |"
    )
    adopted = np.mean(gain) > 0 and min(gain) >= -0.02
    print(f"mean gain on training tiles {np.mean(gain):+.3f}, worst family {min(gain):+.3f}: "
          + ("adopt" if adopted else "drop"))  # fmt: skip


if __name__ == "__main__":
    main()
