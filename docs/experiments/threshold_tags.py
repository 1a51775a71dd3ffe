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

from product_maps import budget_data, model_path, product_maps  # noqa: E402
from suite_runs import score_families, seed_verdicts, table_lines, train_test  # noqa: E402

from core.eval.suite import Family  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

CUT_FROM = {"product": "held", "all changed": "train"}  # the tiles whose changed ones set the cut
RULES = {"all changed": "product"}


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """``family_row`` for ``score_families``: the product's map under both threshold rules."""
    maps = product_maps(budget_data(family, budget, seed), model_path(run, family, budget, seed),
                        seed)  # fmt: skip
    scores = {}
    for name, source in CUT_FROM.items():
        cut = otsu_on_changed_tiles(maps.tiles(source), maps.made[source]).value
        scores[f"cut {name}"] = cut
        for part in ("train", "test"):
            scores[f"{part} {name}"] = maps.f1(part, cut)
    return scores


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (both cuts on training and test tiles, the thresholds) and verdicts."""
    lead = ("cut: product, all changed",
            lambda row: f"{row['cut product']:.3f}, {row['cut all changed']:.3f}")  # fmt: skip
    lines = table_lines(rows, list(CUT_FROM), "train, test", train_test, lead)
    lines.extend(seed_verdicts(rows, RULES))
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_grad_enabled(False)
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
