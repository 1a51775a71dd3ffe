"""The benchmark: every method side by side on the same tiles, in one run.

Protocol: tile every pair, split tiles into train and test (seeded, stratified by tag; ``list/``
files honoured), train KD-MSI on the train tiles' tags, predict the test tiles at full
resolution and score them with one confusion matrix per method. Each method is scored at its
label-free threshold; the F1 at the best threshold is reported beside it, labelled as using
ground truth, and is never used for any choice. The student with MSI and the refined network
are scored a second time on the maps ``kdmsi detect`` writes for the whole pairs
(:mod:`core.eval.whole_pair`): that is what a user gets.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from core.callbacks import Callbacks
from core.choices import DEFAULTS, LearnedMethod, Strategy
from core.data.magnitude import tile_magnitude
from core.data.tilesets import TileSet
from core.detect.flat_field import flatten_maps
from core.detect.fusion import fuse_tiles
from core.detect.params import DetectParams
from core.detect.predictors import make_predictor, predict_tiles
from core.detect.tiled import Predictor
from core.eval.benchmark_data import (
    BenchmarkData,
    load_benchmark_data,
)
from core.eval.metrics import ConfusionMatrix, ThresholdSweep, default_thresholds
from core.eval.strategies import choose_tagged_tiles
from core.eval.whole_pair import whole_pair_predictions
from core.models.model_file import finished_model, load_model
from core.runtime.precision import autocast_dtype
from core.train.pipeline import choose_after_training, split_tags, train_model
from core.train.refinement import RefineParams
from core.train.threshold_choice import otsu_on_changed_tiles
from core.train.trainer import TrainParams, TrainResult


@dataclass(frozen=True)
class BenchmarkParams:
    """The protocol's knobs.

    ``budget`` > 0 tags only that many training tiles (a user's budget), chosen by ``strategy``
    (:mod:`core.eval.strategies`: at random per class, or half at random and half where a first
    model sees the most change, as ``kdmsi suggest`` proposes, or is least sure); the test tiles
    stay the same. ``reuse`` scores the run folder's model when its training ran to the end
    instead of training again (an interrupted suite goes on where it stopped).
    """

    tile: int = 128
    train_fraction: float = 0.7
    budget: int = 0
    strategy: Strategy = "random"
    seed: int = 0
    bands: tuple[int, ...] | None = None
    train: TrainParams = field(default_factory=TrainParams)
    refine: RefineParams = field(default_factory=RefineParams)
    scales: tuple[float, ...] = DEFAULTS.scales
    reuse: bool = False


@dataclass
class MethodScore:
    """One row of the table."""

    method: str
    threshold: float
    metrics: dict[str, float]
    best_threshold: float
    best_f1: float
    seconds: float


def score(
    prob: np.ndarray, data: BenchmarkData, threshold: float
) -> tuple[ConfusionMatrix, ThresholdSweep]:
    """Score test-tile probabilities at ``threshold`` and over a threshold sweep.

    The sweep holds ``threshold`` too, so the best F1 is never below the F1 at ``threshold``.
    """
    truth, valid = data.truth[data.test], data.tiles.valid[data.test]
    matrix = ConfusionMatrix().update(prob >= threshold, truth, valid)
    sweep = ThresholdSweep(np.append(default_thresholds(), threshold))
    sweep.update(prob, truth, valid)
    return matrix, sweep


def _row(
    method: str, prob: np.ndarray, data: BenchmarkData, threshold: float, seconds: float
) -> MethodScore:
    matrix, sweep = score(prob, data, threshold)
    best_t, best = sweep.best()
    return MethodScore(method, threshold, matrix.as_dict(), float(best_t), best.f1, seconds)


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run_benchmark(
    roots: list[Path],
    params: BenchmarkParams,
    run_dir: Path,
    device: torch.device,
    callbacks: Callbacks,
) -> dict[str, Any]:
    """Run the whole protocol once (one seed) and return the results as a dict."""
    start = time.perf_counter()
    data = load_benchmark_data(
        roots, params.tile, params.bands, params.train_fraction, params.seed, callbacks
    )
    bands = params.bands or tuple(range(1, data.tiles.before.shape[1] + 1))
    data = choose_tagged_tiles(
        data, params.budget, params.strategy, params.train, bands, run_dir, device, callbacks,
        params.reuse,
    )  # fmt: skip
    callbacks.info(f"benchmark tiles: {data.summary}")
    test = data.tiles.subset(data.test)
    rows = []
    cva, seconds = _timed(
        lambda: np.clip(
            tile_magnitude(test.before, test.after)
            / (2 * data.cva_threshold[data.test, None, None]),
            0,
            1,
        )
    )
    rows.append(_row("CVA (Otsu)", cva, data, 0.5, seconds))
    train_tiles = data.tiles.subset(data.train)
    result, train_seconds = _trained(train_tiles, bands, params, run_dir, device, callbacks)
    rows.extend(_learned_rows(result.model_path, data, train_tiles, params, device))
    detect = DetectParams(
        device=device.type, precision=params.train.precision, scales=params.scales
    )
    for name, prob, threshold, seconds in whole_pair_predictions(
        roots, result.model_path, data, detect, params.bands, run_dir / "detect", callbacks
    ):
        rows.append(_row(name, prob, data, threshold, seconds))
    return {
        "params": asdict(params),
        "data": data.summary,
        "training": {
            "seconds": train_seconds,
            "selected_epoch": result.best_epoch,
            "val_auc": result.best_auc,
            "method_choice": load_model(result.model_path)[0].method_choice,
        },
        "rows": [asdict(r) for r in rows],
        "wall_seconds": time.perf_counter() - start,
    }


def _trained(
    train_tiles: TileSet,
    bands: tuple[int, ...],
    params: BenchmarkParams,
    run_dir: Path,
    device: torch.device,
    callbacks: Callbacks,
) -> tuple[TrainResult, float]:
    """Train the protocol's model, or reuse a finished one (choosing its map again)."""
    if params.reuse and finished_model(run_dir / "model.pt"):
        callbacks.info(f"Reusing the finished model {run_dir / 'model.pt'}; choosing again.")
        result, train_seconds = reused_result(run_dir, params.train.epochs), float("nan")
        _split, held_out = split_tags(
            train_tiles, DEFAULTS.val_fraction, params.train.seed, Callbacks()
        )
        dtype = autocast_dtype(params.train.precision, device)
        choose_after_training(
            result.model_path, train_tiles, held_out, device, callbacks, dtype,
            affinity_rounds=params.train.affinity_rounds,
        )  # fmt: skip
    else:
        result, train_seconds = _timed(
            lambda: train_model(
                train_tiles, params.train, bands, run_dir, device, callbacks,
                refine_params=params.refine,
            )
        )  # fmt: skip
    return result, train_seconds


def reused_result(run_dir: Path, epochs: int) -> TrainResult:
    """What training reported, read back from a finished model file."""
    summary = load_model(run_dir / "model.pt")[0].train_summary
    selected = int(summary.get("selected_epoch", 0))
    auc = float(summary.get("val_auc_student", float("nan")))
    ran = int(summary.get("params", {}).get("epochs", epochs))  # more with --min-steps
    return TrainResult(run_dir / "model.pt", run_dir, selected, auc, ran)


def _learned_rows(
    model_path: Path,
    data: BenchmarkData,
    train_tiles: TileSet,
    params: BenchmarkParams,
    device: torch.device,
) -> list[MethodScore]:
    """Score the teacher CAM, the student (single scale, MSI, MSI with CVA) and the refined network.

    The student's maps are divided by its flat field where the model says so (as ``detect``
    divides them); the combination is made from the undivided map and divides it itself.
    Thresholds: the student's come from the model file (Otsu on held-out changed-tagged tiles);
    the CAM ablation gets the same rule on the training tiles' CAMs; the refined network, trained
    on hard pseudo labels, is cut at 0.5. No pixel label is involved.
    """
    info, states = load_model(model_path)
    dtype = autocast_dtype(params.train.precision, device)

    def predictor(method: LearnedMethod, scales: tuple[float, ...] = params.scales) -> Predictor:
        flip = len(scales) > 1
        return make_predictor(method, info, states, model_path, device, scales, flip, dtype=dtype)

    cam = predictor("cam")
    cam_threshold = otsu_on_changed_tiles(train_tiles, predict_tiles(cam, train_tiles, device))
    single, msi = (1.0,), tuple(params.scales)
    methods = [  # name, predictor, threshold, the field its map is divided by (or None)
        ("CAM (teacher only)", cam, cam_threshold.value, None),
        ("KD-MSI single-scale", predictor("kdmsi", single), info.threshold_single,
         info.student_field(single)),
        ("KD-MSI + MSI", predictor("kdmsi"), info.threshold, info.student_field(msi)),
    ]  # fmt: skip
    if "refined" in states:
        methods.append(("KD-MSI refined", predictor("kdmsi-refined"), 0.5, None))
    test = data.tiles.subset(data.test)
    rows = []
    for name, predictor, threshold, divide_by in methods:
        prob, seconds = _timed(lambda p=predictor: predict_tiles(p, test, device))
        rows.append(_row(name, flatten_maps(prob, divide_by), data, threshold, seconds))
        if name == "KD-MSI + MSI":  # the same map combined with CVA (method kdmsi-cva)
            fused, more = _timed(
                lambda p=prob: fuse_tiles(
                    p,
                    test,
                    info.cva_window,
                    info.affinity_rounds,
                    info.cva_standardised,
                    info.field_for(tuple(params.scales)),
                )
            )
            rows.append(
                _row("KD-MSI + MSI + CVA", fused, data, info.threshold_fused, seconds + more)
            )
    return rows


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One table over seeds: mean ± std of each metric per method."""
    methods = [r["method"] for r in results[0]["rows"]]
    keys = ("f1", "iou", "precision", "recall", "oa", "kappa")
    lines = [
        "| method | F1 | IoU | precision | recall | OA | kappa "
        "| F1 at best threshold (uses ground truth) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, method in enumerate(methods):
        cells = []
        for key in keys:
            values = np.array([r["rows"][i]["metrics"][key] for r in results])
            cells.append(_mean_std(values))
        best = np.array([r["rows"][i]["best_f1"] for r in results])
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_mean_std(best)} |")
    return "\n".join(lines)


def _mean_std(values: np.ndarray) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
