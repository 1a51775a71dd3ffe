"""Issue 18: keep a change region only where its strongest pixel is clearly above the cut.

The product's map (``detect --method auto``, ``kdmsi-cva`` at 48 tags) is cut at one threshold
``t`` (Otsu's over the held-out changed-tagged tiles). On session 21's whole-pair maps that cut
is too low on some families (OSCD, classic SAR: many weak regions of false alarms) and too high
on others (WHU-CD, DSIFN-CD: real buildings cut short); no single shift of ``t`` helped every
family (session 23). Regions are what a user gets as polygons, and a region's strongest pixel
says more about it than each pixel alone: classic change detection cuts with two thresholds
(hysteresis), growing regions from confident seeds. ``vectorize`` already measures every
polygon's ``max_prob``, so the product could apply either rule at no cost. Candidates, fixed
before any map was scored with them (session 24), each with the ratio 1.25 chosen a priori (the
smallest step that clearly separates two cuts on maps whose cuts sit at 0.17-0.31; no other
ratio will be tried on these maps):

- ``peak``: the change regions of ``map >= t`` (4-connected, as ``vectorize`` makes polygons)
  kept only where their maximum reaches ``1.25 t``; the others become background (precision
  only).
- ``hysteresis``: the change regions of ``map >= 0.8 t`` kept only where their maximum reaches
  ``1.25 t`` (weak regions dropped, strong regions grown to their lower cut).

``1.25 t`` is capped at 1. Against ``product``: ``map >= t``. Both rules run on the whole-pair
maps ``kdmsi benchmark`` wrote with ``detect`` (``RUN/<family>/48/seed<S>/detect/<method>/``, the
method ``auto`` stands for, ``t`` from the map's ``kdmsi_threshold``); regions span tiles as in
the product, and the tiles are cut out of the maps afterwards. No pixel label chooses anything.

Adoption rule (issue 18, fixed before the run), each candidate judged separately against
``product``: each family's training-tile F1 (the 48 tagged tiles) averaged over seeds 0, 1 and 2;
the mean over the 9 families must rise and no family may fall by more than 0.02. The test tiles
and each seed alone only report. If both pass, the larger mean gain is adopted. Usage::

    python docs/experiments/hysteresis.py /work/suite/ff_all SUITE DATA --seeds 0 1 2 --only ...

Outcome (session 24): ``peak`` +0.0065 on the training tiles' mean over the 9 families, worst
family +0.002: adopted (``vectorize --peak-ratio``, default 1.25); ``hysteresis`` -0.021, worst
-0.101 (classic SAR): dropped (BENCHMARKS.md, "Regions kept by their strongest pixel").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from osgeo import gdal
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from product_maps import budget_data, model_path  # noqa: E402
from suite_runs import score_families, seed_verdicts, table_lines, train_test  # noqa: E402

from core.data.datasets import find_pairs  # noqa: E402
from core.detect.params import resolve_method  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family  # noqa: E402
from core.eval.whole_pair import tiles_from_maps  # noqa: E402

RATIO = 1.25  # the seed cut over t; the grow cut of ``hysteresis`` is t / RATIO
LOW = {"product": None, "peak": 1.0, "hysteresis": 1.0 / RATIO}  # grow cut / t (None: plain)
RULES = {"peak": "product", "hysteresis": "product"}
FOUR = ndimage.generate_binary_structure(2, 1)


def regions_kept(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """The pixels of the 4-connected regions of ``values >= low`` whose maximum reaches ``high``."""
    labels, count = ndimage.label(values >= low, structure=FOUR)
    if count == 0:
        return np.zeros(values.shape, dtype=bool)
    peaks = ndimage.maximum(values, labels, index=np.arange(1, count + 1))
    keep = np.concatenate([[False], np.asarray(peaks) >= high])
    return keep[labels]


def whole_maps(family: Family, folder: Path, method: str) -> tuple[dict[str, np.ndarray], float]:
    """The whole-pair maps ``detect`` wrote for ``family`` (by pair key) and their threshold."""
    maps, cut = {}, None
    for root in family.roots:
        for files in find_pairs(root):
            ds = gdal.Open(str(folder / method / f"{root.name}_{files.name}_{method}.tif"))
            maps[files.key] = ds.GetRasterBand(1).ReadAsArray().astype(np.float32)
            cut = float(ds.GetMetadataItem("kdmsi_threshold"))
    return maps, cut


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """``family_row`` for ``score_families``: the product's map under the three cuts."""
    data = budget_data(family, budget, seed)
    model = model_path(run, family, budget, seed)
    maps, cut = whole_maps(family, model.parent / "detect", resolve_method("auto", model))
    scores = {"cut": cut}
    for name, low in LOW.items():
        if low is None:
            masks = {key: m >= cut for key, m in maps.items()}
        else:
            high = min(RATIO * cut, 1.0)
            masks = {key: regions_kept(m, low * cut, high) for key, m in maps.items()}
        tiles = tiles_from_maps(data, {k: v.astype(np.float32) for k, v in masks.items()}) > 0.5
        for part in ("train", "test"):
            index = getattr(data, part)
            matrix = ConfusionMatrix().update(
                tiles[index], data.truth[index], data.tiles.valid[index]
            )
            scores[f"{part} {name}"] = matrix.as_dict()["f1"]
    return scores


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (the three cuts on training and test tiles, ``t``) and verdicts."""
    lines = table_lines(rows, list(LOW), "train, test", train_test,
                        ("t", lambda row: f"{row['cut']:.3f}"))  # fmt: skip
    lines.extend(seed_verdicts(rows, RULES))
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
