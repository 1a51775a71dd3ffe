"""Issue 18: the combined map's threshold from every changed tag, not only the held-out ones.

The product (``kdmsi-cva``) is cut at Otsu's threshold of its map over the changed-tagged tiles
held out from training: with 48 tags that is 5 to 10 tiles (none on the OMBRIA families, whose
thresholds already come from all their tags). On session 21's models the threshold it picks is
far from the ground-truth-best one where the held-out tiles are fewest (OSCD Mumbai and Hong
Kong, classic SAR pairs: F1 0.02-0.16 at the chosen cut against 0.04-0.55 at the best; the
ground truth only diagnoses here, it chooses nothing). The held-out tiles were kept apart because
the student has seen the others, so its map there may be more confident than on new imagery;
half of the combined map (CVA) is untrained and sees no such bias, and five times as many tiles
make a steadier histogram. Candidate, fixed before any map was scored with it (session 23):

- ``all changed``: the same combined map (the product's scales, flips, flat field over the 48
  tagged tiles, 5 x 5 CVA average, standardised one-band dates, bfloat16 autocast as ``detect``
  runs on this CPU) cut at Otsu's threshold (256 bins) over the valid pixels of **all** the
  changed-tagged tiles of the budget, held-out and training ones alike. Against ``product``: the
  same map cut at Otsu's threshold over the held-out changed-tagged tiles only.

Adoption rule (issue 18, fixed before the run): each family's training-tile F1 (the 48 tagged
tiles) averaged over seeds 0, 1 and 2; the mean over the 9 families must rise and no family may
fall by more than 0.02. The test tiles and each seed alone only report. If it passes,
``choose_thresholds`` cuts every map (the combined map, the student's own, the single scale) at
Otsu's threshold over all changed-tagged tiles. Usage::

    python docs/experiments/threshold_tags.py /work/suite/ff_all SUITE DATA --seeds 0 1 2 --only ...

(RUN holds ``<family>/48/seed<S>/model.pt`` for each seed.)

Outcome (session 23): +0.016 on the training tiles' mean over the 9 families, worst family -0.045
(WHU-CD): dropped (BENCHMARKS.md, "Three threshold rules from the tags").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_rules import CPU, held_out_index  # noqa: E402
from suite_runs import score_families, table_lines, train_test, verdict  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.detect.flat_field import flat_field  # noqa: E402
from core.detect.fusion import fuse_tiles  # noqa: E402
from core.detect.params import DetectParams  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.eval.benchmark_data import budget_subset, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.runtime.precision import autocast_dtype  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

CUT_FROM = {"product": "held", "all changed": "train"}  # the tiles whose changed ones set the cut
RULES = {"all changed": "product"}
WINDOW = 5  # the product's CVA average


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """``family_row`` for ``score_families``: the product's map under both threshold rules."""
    data = load_benchmark_data(list(family.roots), family.tile, family.bands, 0.7, seed,
                               Callbacks())  # fmt: skip
    data = budget_subset(data, budget, seed)
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    info, states = load_model(model)
    detect = DetectParams()  # the product's scales and flips
    dtype = autocast_dtype("auto", CPU)
    student = make_predictor("kdmsi", info, states, model, CPU, detect.scales, detect.flip,
                             dtype=dtype)  # fmt: skip
    index = {"held": held_out_index(data, seed), "train": data.train, "test": data.test}
    maps = {part: predict_tiles(student, data.tiles.subset(i), CPU) for part, i in index.items()}
    field = flat_field(maps["train"], data.tiles.valid[data.train])
    made = {
        part: fuse_tiles(maps[part], data.tiles.subset(i), WINDOW, standardised=True, field=field)
        for part, i in index.items()
    }
    scores = {}
    for name, source in CUT_FROM.items():
        cut = otsu_on_changed_tiles(data.tiles.subset(index[source]), made[source]).value
        scores[f"cut {name}"] = cut
        for part in ("train", "test"):
            matrix = ConfusionMatrix().update(
                made[part] >= cut, data.truth[index[part]], data.tiles.valid[index[part]]
            )
            scores[f"{part} {name}"] = matrix.as_dict()["f1"]
    return scores


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (both cuts on training and test tiles, the thresholds) and verdicts."""
    lead = ("cut: product, all changed",
            lambda row: f"{row['cut product']:.3f}, {row['cut all changed']:.3f}")  # fmt: skip
    lines = table_lines(rows, list(CUT_FROM), "train, test", train_test, lead)
    seeds = sorted({name.rsplit(", seed ", 1)[1] for name in rows if ", seed " in name})
    for seed in seeds:  # each seed alone
        alone = {k: v for k, v in rows.items() if k.endswith(f", seed {seed}")}
        lines.append(f"\nSeed {seed} alone:")
        lines.extend(verdict(alone, rule, base, 4) for rule, base in RULES.items())
    if not seeds:
        lines.extend(verdict(rows, rule, base, 4) for rule, base in RULES.items())
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_grad_enabled(False)
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
