"""Issue 18: window seams. Tilings of ``detect`` scored on the models of a suite run.

``detect`` cuts a pair into windows of the training tile (overlap a quarter of it, no context
for the student) and blends them with a squared-sine weight. The student's map of a window peaks
in its centre and fades at its borders, so whole-pair maps show the window grid as a lattice of
blobs. Candidates, each fixed before this script was run on any family:

- ``now``: the current tiling (the baseline).
- ``context``: each window is read with a quarter tile of real neighbouring pixels around it
  and only its centre is kept (as the refinement network already runs); the network then never
  sees the window's border as an image border.
- ``half overlap``: windows overlap by half a tile, so every pixel is near the centre of a window
  and the blend weights favour it (about 2.2x the windows of ``now``).

Every map is the product's default, the student with MSI combined with CVA (``kdmsi-cva``). Session
12 cut every tiling at the model's threshold, which was chosen on tile-by-tile maps (each tile one
window: the lattice's shape), so a map without the lattice was cut at a threshold made for
another map. Since session 18 (fixed before this version was run on any model) each tiling is cut
at its own threshold, chosen as the product chooses it but on that tiling's whole-pair maps:
Otsu's threshold over the held-out changed-tagged training tiles (all training tiles where too
few tags were held out), the tiles cut from the maps ``detect`` writes. Tags only choose
anything; pixel labels only score. Adoption rule (issue 18, fixed before the run), for each
candidate separately: judged on the *training* tiles' pixel labels, the mean changed-class F1 over
families must rise and no family may fall by more than 0.02. The test tiles only report. Also
reported: the grid contrast, the map's mean over the central half of the baseline's windows divided
by its mean over their border ring (1.0: no lattice).

Session 18, on refined maps (fixed before it was run): the colour-affinity refinement of each
window (``core/detect/affinity.py``, judged on tiles by ``affinity_refine.py``) changes every
window's map, so the tilings are judged again with it: this script run from a tree whose
``kdmsi-cva`` refines each window, on copies of the models that store ``affinity_rounds`` 10,
``--rules now,half overlap``. It judges half overlap against now, both refined; and, by the same
rule, "now" refined against "now" of the plain run judges the refinement on whole-pair maps.

Usage (``--rules now,half overlap`` runs only those tilings)::

    python docs/experiments/window_rules.py RUN resources/benchmark-suite.json DATA --budget 48
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_rules import held_out_index  # noqa: E402
from suite_runs import score_families  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.data.datasets import find_pairs  # noqa: E402
from core.data.magnitude import pair_threshold  # noqa: E402
from core.detect.loading import load_predictor  # noqa: E402
from core.detect.params import DetectParams  # noqa: E402
from core.detect.tiled import TilingParams, axis_plan, predict_pair  # noqa: E402
from core.eval.benchmark_data import BenchmarkData, budget_subset, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.eval.whole_pair import read_map, tiles_from_maps  # noqa: E402
from core.io.rasters import RasterPair  # noqa: E402
from core.io.stretch import compute_stretch  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

CPU = torch.device("cpu")
RULES = ("now", "context", "half overlap")


def tiling(rule: str, tile: int) -> TilingParams:
    """The windows of each rule for a model trained on ``tile`` px tiles."""
    base = DetectParams(method="kdmsi-cva").tiling(tile)
    if rule == "context":
        return replace(base, margin=tile // 4)
    if rule == "half overlap":
        return replace(base, overlap=tile // 2)
    return base


def grid_contrast(prob: np.ndarray, tile: int) -> float:
    """Mean over the central half of the baseline's windows / mean over their border ring."""
    plan = DetectParams(method="kdmsi-cva").tiling(tile)
    centre, ring = [], []
    row_size, rows = axis_plan(prob.shape[0], plan.window, plan.overlap, plan.align)
    col_size, cols = axis_plan(prob.shape[1], plan.window, plan.overlap, plan.align)
    for r in rows:
        for c in cols:
            window = prob[r : r + row_size, c : c + col_size]
            inner = np.zeros(window.shape, dtype=bool)
            h, w = window.shape
            inner[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
            valid = window >= 0
            centre.append(window[inner & valid].mean() if (inner & valid).any() else np.nan)
            ring.append(window[~inner & valid].mean() if (~inner & valid).any() else np.nan)
    return float(np.nanmean(centre) / max(np.nanmean(ring), 1e-9))


def whole_pair_maps(family: Family, model: Path, rule: str) -> dict[str, np.ndarray]:
    """The ``kdmsi-cva`` map of every pair of the family with the rule's windows."""
    info, _states = load_model(model)
    maps = {}
    with tempfile.TemporaryDirectory() as scratch:
        for root in family.roots:
            for files in find_pairs(root):
                bands = family.bands or tuple(info.bands)
                with RasterPair.open(files.before, files.after, bands) as pair:
                    stretch = compute_stretch(pair)
                    params = DetectParams(
                        method="kdmsi-cva",
                        device="cpu",
                        pair_cva_threshold=pair_threshold(pair, stretch),
                    )
                    _info, predictor, _engine = load_predictor(model, params, CPU, Path(scratch))
                    out = Path(scratch) / "map.tif"
                    predict_pair(
                        pair, predictor, stretch, out, tiling(rule, info.tile), CPU, {}, None, True
                    )
                maps[files.key] = read_map(out)
    return maps


def f1(
    data: BenchmarkData, maps: dict[str, np.ndarray], index: np.ndarray, threshold: float
) -> float:
    """Changed-class F1 of the maps cut at ``threshold`` on the tiles at ``index``."""
    prob = tiles_from_maps(data, maps)[index]
    matrix = ConfusionMatrix().update(prob >= threshold, data.truth[index], data.tiles.valid[index])
    return matrix.as_dict()["f1"]


def family_row(
    family: Family, run: Path, budget: int, seed: int, rules: tuple[str, ...] = RULES
) -> dict[str, float]:
    """Every rule's F1 (training and test tiles) and grid contrast for one family's model."""
    data = load_benchmark_data(
        list(family.roots), family.tile, family.bands, 0.7, seed, Callbacks()
    )
    data = budget_subset(data, budget, seed)
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    info, _states = load_model(model)
    held_index = held_out_index(data, seed)
    held = data.tiles.subset(held_index)
    row = {}
    for rule in rules:
        maps = whole_pair_maps(family, model, rule)
        threshold = otsu_on_changed_tiles(held, tiles_from_maps(data, maps)[held_index]).value
        row[f"threshold {rule}"] = threshold
        row[f"train {rule}"] = f1(data, maps, data.train, threshold)
        row[f"test {rule}"] = f1(data, maps, data.test, threshold)
        row[f"contrast {rule}"] = float(
            np.mean([grid_contrast(m, info.tile) for m in maps.values()])
        )
    return row


def report(rows: dict[str, dict[str, float]], rules: tuple[str, ...] = RULES) -> str:
    """A markdown table per family and rule, and each candidate's verdict."""
    parts = ("train", "test", "contrast")
    lines = [
        "| family | " + " | ".join(f"{p} {r}" for p in parts for r in rules) + " |",
        "|---|" + "---|" * (len(parts) * len(rules)),
    ]
    mean = {k: float(np.mean([row[k] for row in rows.values()])) for k in next(iter(rows.values()))}
    for name, row in {**rows, "mean": mean}.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{row[f'{p} {r}']:.3f}" for p in parts for r in rules)
            + " |"
        )
    for rule in rules[1:]:
        gain = [row[f"train {rule}"] - row["train now"] for row in rows.values()]
        adopted = np.mean(gain) > 0 and min(gain) >= -0.02
        lines.append(
            f"\n{rule}: mean gain on training tiles {np.mean(gain):+.3f}, worst family "
            f"{min(gain):+.3f}: {'adopt' if adopted else 'drop'}"
        )
    return "\n".join(lines)


def chosen_rules() -> tuple[str, ...]:
    """``--rules now,half overlap`` (taken out of ``sys.argv``): the tilings to run; all if absent.

    "now" always comes first: the others are judged against it.
    """
    if "--rules" not in sys.argv:
        return RULES
    at = sys.argv.index("--rules")
    asked = sys.argv[at + 1].split(",")
    del sys.argv[at : at + 2]
    return ("now", *(rule for rule in RULES[1:] if rule in asked))


def main() -> None:
    """Score every rule on the families of the suite run and apply the adoption rule."""
    rules = chosen_rules()
    score_families(
        __doc__.splitlines()[0], partial(family_row, rules=rules), partial(report, rules=rules)
    )


if __name__ == "__main__":
    main()
