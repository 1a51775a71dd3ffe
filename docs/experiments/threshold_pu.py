"""Issue 18: the threshold that maximises the F1 the tags of both kinds predict.

Otsu's cut over changed-tagged tiles splits a mixture of change and background, but it does not
know how much of that mixture is background, nor how often the background rises above a cut;
the unchanged-tagged tiles say the second (they are background only), and the two histograms
together say the first. Where change is a small share of a changed tile (OSCD, the classic SAR
pairs), Otsu's cut falls in the background's tail: on session 21's models the chosen threshold
gives F1 0.02-0.16 there against 0.04-0.55 at the ground-truth-best one (diagnosis only).
Positive-unlabelled learning's view: a changed tile's pixels are a mixture ``pi x background +
(1 - pi) x change``, the unchanged tiles' pixels are the background alone.

Candidates, fixed before any map was scored with them (session 23), both on the product's
combined map (the product's scales, flips, flat field over the 48 tagged tiles, 5 x 5 CVA
average, standardised one-band dates, bfloat16 autocast as ``detect`` runs on this CPU):

- ``pu f1``: from the held-out tiles (as the product: all tagged tiles when too few are held
  out), the histograms (256 bins on [0, 1]) of the valid pixels of the changed-tagged (``c``)
  and of the unchanged-tagged (``u``) tiles, each as a share of its pixels. ``pi`` (the
  background's share of a changed tile) is the smallest ratio ``C(k) / U(k)`` of their
  cumulative shares over the bins ``k`` where ``U(k) >= 0.5`` (at low values change is rare, so
  the ratio is near ``pi`` and above it), clipped to [0, 1]. For every bin edge ``t``, with
  ``Sc``, ``Su`` the shares at or above ``t`` and ``wc``, ``wu`` the two kinds' shares of all
  those pixels: true positives ``tp = wc x max(Sc - pi x Su, 0)``, called ``wc x Sc + wu x
  Su``, actual ``wc x (1 - pi)``, and the predicted F1 ``2 tp / (called + actual)``. The cut is
  the edge of the highest predicted F1 (ties: the one closest to Otsu's); Otsu's own cut when
  there is no tile of one kind or ``1 - pi < 0.001``.
- ``pu f1 all``: the same from all 48 tagged tiles (more tiles, but the student was trained on
  most of them, so its map there may be lower on the unchanged ones than on new imagery).

Against ``product``: the same map cut at Otsu's threshold over the held-out changed-tagged tiles.
Adoption rule (issue 18, fixed before the run): each family's training-tile F1 (the 48 tagged
tiles) averaged over seeds 0, 1 and 2; the mean over the 9 families must rise and no family may
fall by more than 0.02; if both pass, the one with the higher mean. The test tiles and each seed
alone only report. If one passes, ``choose_thresholds`` cuts the combined map with it. Usage::

    python docs/experiments/threshold_pu.py /work/suite/ff_all SUITE DATA --seeds 0 1 2 --only ...

(RUN holds ``<family>/48/seed<S>/model.pt`` for each seed.)

Outcome (session 23): ``pu f1`` -0.086 (worst -0.229, classic SAR), ``pu f1 all`` -0.098 (worst
-0.289): both dropped (BENCHMARKS.md, "Three threshold rules from the tags").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from product_maps import budget_data, model_path, product_maps  # noqa: E402
from suite_runs import score_families, seed_verdicts, table_lines, train_test  # noqa: E402

from core.data.tilesets import TileSet  # noqa: E402
from core.eval.suite import Family  # noqa: E402
from core.train.threshold_choice import BINS, otsu_on_changed_tiles  # noqa: E402

NAMES = ("product", "pu f1", "pu f1 all")
RULES = {"pu f1": "product", "pu f1 all": "product"}
LOW_SHARE = 0.5  # the background's share below which the mixture ratio is read


def shares(tiles: TileSet, prob: np.ndarray, changed: bool) -> tuple[np.ndarray, int]:
    """Each bin's share of the valid pixels of the tiles tagged ``changed``, and their count."""
    pick = tiles.labels.astype(bool) == changed
    pixels = prob[pick][tiles.valid[pick]]
    hist = np.histogram(pixels, bins=BINS, range=(0.0, 1.0))[0].astype(np.float64)
    return hist / max(pixels.size, 1), int(pixels.size)


def pu_cut(tiles: TileSet, prob: np.ndarray) -> float:
    """The cut of the highest F1 predicted by the two tag kinds' histograms (see the docstring)."""
    otsu = otsu_on_changed_tiles(tiles, prob).value
    (hc, nc), (hu, nu) = shares(tiles, prob, True), shares(tiles, prob, False)
    if nc == 0 or nu == 0:
        return otsu
    below_c, below_u = np.cumsum(hc), np.cumsum(hu)
    low = below_u >= LOW_SHARE
    pi = float(np.clip(np.min(below_c[low] / below_u[low]), 0.0, 1.0))
    if 1.0 - pi < 1e-3:
        return otsu
    above_c = np.concatenate([[1.0], 1.0 - below_c[:-1]])  # share at or above each left edge
    above_u = np.concatenate([[1.0], 1.0 - below_u[:-1]])
    wc = nc / (nc + nu)
    tp = wc * np.maximum(above_c - pi * above_u, 0.0)
    called = wc * above_c + (1.0 - wc) * above_u
    f1 = 2.0 * tp / np.maximum(called + wc * (1.0 - pi), 1e-12)
    edges = np.linspace(0.0, 1.0, BINS + 1)[:-1]
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(edges[best[np.argmin(np.abs(edges[best] - otsu))]])


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """``family_row`` for ``score_families``: the product's map under the three cuts."""
    maps = product_maps(budget_data(family, budget, seed), model_path(run, family, budget, seed),
                        seed)  # fmt: skip
    held, tagged = maps.tiles("held"), maps.tiles("train")
    cuts = {
        "product": otsu_on_changed_tiles(held, maps.made["held"]).value,
        "pu f1": pu_cut(held, maps.made["held"]),
        "pu f1 all": pu_cut(tagged, maps.made["train"]),
    }
    scores = {f"cut {name}": cut for name, cut in cuts.items()}
    for name, cut in cuts.items():
        for part in ("train", "test"):
            scores[f"{part} {name}"] = maps.f1(part, cut)
    return scores


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (the cuts on training and test tiles, the thresholds) and verdicts."""
    lead = ("cut: " + ", ".join(NAMES),
            lambda row: ", ".join(f"{row[f'cut {n}']:.3f}" for n in NAMES))  # fmt: skip
    lines = table_lines(rows, list(NAMES), "train, test", train_test, lead)
    lines.extend(seed_verdicts(rows, RULES))
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_grad_enabled(False)
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
