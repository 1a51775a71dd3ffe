"""From a tile set to a model file: split the tags, train, choose the threshold."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from core.callbacks import Callbacks
from core.modelfile import ModelInfo
from core.samples import TileSet
from core.train import Trainer, TrainParams, TrainResult
from core.validation import stratified_split

MIN_HELD_OUT_PER_CLASS = 2


def split_tags(
    tiles: TileSet, fraction: float, seed: int, callbacks: Callbacks
) -> tuple[TileSet, TileSet | None]:
    """Hold out ``fraction`` of each class for model selection (None when too few tags)."""
    train_idx, val_idx = stratified_split(tiles.labels, fraction, seed)
    held = tiles.subset(val_idx)
    counts = held.counts
    if fraction <= 0 or min(counts.values()) < MIN_HELD_OUT_PER_CLASS:
        callbacks.warning(
            f"Too few tags to hold some out ({tiles.counts}); training on all of them and "
            "keeping the last epoch instead of choosing one."
        )
        return tiles, None
    callbacks.info(
        f"Training on {len(train_idx)} tiles; {len(val_idx)} held out to choose the epoch."
    )
    return tiles.subset(train_idx), held


def train_model(
    tiles: TileSet,
    params: TrainParams,
    bands: tuple[int, ...],
    run_dir: Path,
    device: torch.device,
    callbacks: Callbacks,
    val_fraction: float = 0.2,
    resume: bool = False,
) -> TrainResult:
    """Train KD-MSI on tagged tiles and write ``run_dir/model.pt``.

    The threshold stored in the model is the fixed 0.5 of the student's sigmoid (the student is
    trained towards CAMs normalised to [0, 1]); no pixel label is involved anywhere.
    """
    train_set, val_set = split_tags(tiles, val_fraction, params.seed, callbacks)
    info = ModelInfo(
        backbone=params.backbone,
        teacher_fusion=params.teacher_fusion,
        student_fusion=params.student_fusion,
        output_stride=params.output_stride,
        bands=list(bands),
        tile=tiles.tile_size,
        train_summary={
            "tags": tiles.counts,
            "held_out": val_set.counts if val_set is not None else {},
            "params": asdict(params),
        },
    )
    trainer = Trainer(train_set, val_set, params, info, run_dir, device, callbacks)
    if resume:
        trainer.resume()
    return trainer.run()
