"""How the simulated user chooses which training tiles to tag within a budget.

``random``: the budget drawn per class at random (:func:`core.eval.benchmark_data.budget_subset`).
``suggest-peaks``: what a user of ``kdmsi suggest`` does since session 22: tag half of the budget
at random, train, then tag the untagged training tiles where the model's chosen map peaks highest
(where it sees the most change: its clearest detections and its loudest false alarms, as ``kdmsi
suggest`` ranks them) until the budget is spent; the benchmark then trains again on all of them
(tags held out from all of them, as a user's training does). ``suggest``: the same first round,
then the untagged tiles the model is least sure about (the peak closest to the map's threshold),
what ``kdmsi suggest`` proposed until session 22 and lost to random tags (BENCHMARKS.md; holding
the tags out from the random half only was tried and dropped too). Tags come from the masks, as
everywhere in the benchmark; the test tiles are never among the candidates.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.callbacks import Callbacks
from core.choices import Strategy
from core.detect.quick_map import quick_map, quick_scores
from core.detect.tile_ranking import most_changed, most_uncertain, tile_peaks
from core.eval.benchmark_data import BenchmarkData, budget_subset
from core.models.model_file import finished_model, load_model
from core.runtime.precision import autocast_dtype
from core.train.pipeline import train_model
from core.train.trainer import TrainParams


def choose_tagged_tiles(
    data: BenchmarkData,
    budget: int,
    strategy: Strategy,
    train: TrainParams,
    bands: tuple[int, ...],
    run_dir: Path,
    device: torch.device,
    callbacks: Callbacks,
    reuse: bool = False,
) -> BenchmarkData:
    """``data`` with only the training tiles the simulated user tags (all when ``budget <= 0``).

    With ``reuse``, a finished first-round model in ``run_dir/first_round`` is used again.
    """
    if budget <= 0 or strategy == "random":
        return budget_subset(data, budget, train.seed)
    first = budget_subset(data, budget // 2, train.seed)
    model_path = run_dir / "first_round" / "model.pt"
    if reuse and finished_model(model_path):
        callbacks.info(f"suggest: reusing the first round's model {model_path}")
    else:
        callbacks.info(f"suggest: first round on {len(first.train)} random tags")
        model_path = train_model(
            data.tiles.subset(first.train), train, bands, model_path.parent, device, callbacks
        ).model_path
    info, states = load_model(model_path)
    dtype = autocast_dtype(train.precision, device)
    chosen = quick_map(info)  # the map kdmsi suggest scores with
    pool = np.setdiff1d(data.train, first.train)
    tiles = data.tiles.subset(pool)
    prob = quick_scores(chosen, info, states, model_path, tiles, device, dtype=dtype)
    scores = tile_peaks(prob, tiles.valid)
    count = budget - len(first.train)
    if strategy == "suggest-peaks":
        extra = pool[most_changed(scores, count)]
        where = "where the model sees the most change"
    else:
        extra = pool[most_uncertain(scores, chosen.threshold, count)]
        where = "the model is least sure about"
    callbacks.info(f"suggest: {len(extra)} more tags on the tiles {where}")
    return replace(data, train=np.sort(np.concatenate([first.train, extra])))
