"""From a tile set to a model file: split the tags, train, choose thresholds, optionally refine.

Everything here uses tile tags only; pixel labels never reach this module.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from core.callbacks import Callbacks
from core.data.tilesets import TileSet
from core.detect.flat_field import flat_field, flatten_maps
from core.detect.fusion import fuse_tiles
from core.detect.msi import MSI_SCALES
from core.detect.params import resolve_method
from core.detect.predictors import make_predictor, predict_tiles
from core.detect.tiled import Predictor
from core.models.model_file import AFFINITY_ROUNDS, CVA_WINDOW, ModelInfo, load_model, save_model
from core.runtime.distributed import SINGLE, DistEnv
from core.train.method_choice import MethodChoice, choose_method
from core.train.refinement import RefineParams, train_refiner
from core.train.selection import stratified_split
from core.train.threshold_choice import otsu_on_changed_tiles
from core.train.trainer import Trainer, TrainParams, TrainResult

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
            f"Too few tags to hold some out ({tiles.counts_text}); training on all of them and "
            "keeping the last epoch instead of choosing one."
        )
        return tiles, None
    callbacks.info(
        f"Training on {len(train_idx)} tiles; {len(val_idx)} held out to choose the epoch."
    )
    return tiles.subset(train_idx), held


def student_predictors(
    info: ModelInfo, states: dict, path: Path, device: torch.device, dtype: torch.dtype | None
) -> tuple[Predictor, Predictor]:
    """The student's MSI and single-scale predictors, as ``kdmsi detect`` runs them."""
    multi = make_predictor("kdmsi", info, states, path, device, dtype=dtype)
    single = make_predictor("kdmsi", info, states, path, device, (1.0,), False, dtype=dtype)
    return multi, single


def choose_thresholds(
    model_path: Path,
    tiles: TileSet,
    device: torch.device,
    callbacks: Callbacks,
    dtype: torch.dtype | None = None,
    affinity_rounds: int = AFFINITY_ROUNDS,
    tagged: TileSet | None = None,
) -> ModelInfo:
    """Store the thresholds chosen on ``tiles`` (tags only) in the model.

    The student's with MSI and single scale, and the same two combined with CVA
    (:mod:`core.detect.fusion`), refined ``affinity_rounds`` times with the pair's colours.
    Both the student's maps and the combination divide the student's maps by their flat fields,
    their average over the images of ``tagged`` (all tagged tiles; ``tiles`` when None), which
    are stored too (made from the undivided maps, also when a reused model already has some).

    ``dtype`` is the autocast type inference will use, so that the thresholds fit its maps.
    """
    info, states = load_model(model_path)
    multi_scale, single_scale = student_predictors(info, states, model_path, device, dtype)
    fields = [  # label-free: the tiles' images, not their tags
        flat_field(predict_tiles(predictor, tagged or tiles, device), (tagged or tiles).valid)
        for predictor in (multi_scale, single_scale)
    ]
    # this code's combination, reused models too
    info = replace(
        info, cva_window=CVA_WINDOW, affinity_rounds=affinity_rounds, cva_standardised=True,
        flat_field=fields[0].ravel().tolist(), flat_field_single=fields[1].ravel().tolist(),
        student_flattened=True,
    )  # fmt: skip
    prob_msi = predict_tiles(multi_scale, tiles, device)
    prob_one = predict_tiles(single_scale, tiles, device)
    multi = otsu_on_changed_tiles(tiles, flatten_maps(prob_msi, fields[0]))
    single = otsu_on_changed_tiles(tiles, flatten_maps(prob_one, fields[1]))
    window, rounds = info.cva_window, info.affinity_rounds
    fused = otsu_on_changed_tiles(
        tiles, fuse_tiles(prob_msi, tiles, window, rounds, True, info.field_for(MSI_SCALES))
    )
    fused_single = otsu_on_changed_tiles(
        tiles, fuse_tiles(prob_one, tiles, window, rounds, True, info.field_for((1.0,)))
    )
    info = replace(
        info,
        threshold=multi.value,
        threshold_single=single.value,
        threshold_rule=multi.rule,
        threshold_fused=fused.value,
        threshold_fused_single=fused_single.value,
    )
    save_model(model_path, info, states)
    callbacks.info(
        f"Thresholds chosen from tags ({multi.rule}): MSI {multi.value:.3f}, "
        f"single-scale {single.value:.3f}, combined with CVA {fused.value:.3f}."
    )
    return info


def choose_after_training(
    model_path: Path,
    tiles: TileSet,
    held_out: TileSet | None,
    device: torch.device,
    callbacks: Callbacks,
    dtype: torch.dtype | None = None,
    val_fraction: float = 0.2,
    affinity_rounds: int = AFFINITY_ROUNDS,
) -> MethodChoice | None:
    """Choose the thresholds and the map ``detect --method auto`` runs, and store them.

    Both are chosen on the held-out tags (the thresholds on all ``tiles`` when none were held
    out); :func:`train_model` calls this after training, and the benchmark calls it again on a
    reused model so that its choices follow the current rules. ``affinity_rounds`` is stored in
    the model and used by the combined map (``TrainParams.affinity_rounds``).
    """
    chosen_on = held_out if held_out is not None else tiles
    choose_thresholds(model_path, chosen_on, device, callbacks, dtype, affinity_rounds, tiles)
    return choose_method(model_path, held_out, device, callbacks, dtype, len(tiles), val_fraction)


def refine(
    model_path: Path,
    tiles: TileSet,
    params: RefineParams,
    device: torch.device,
    callbacks: Callbacks,
    dtype: torch.dtype | None = None,
) -> None:
    """Train the refinement network on MSI pseudo labels of ``tiles`` and add it to the model."""
    info, states = load_model(model_path)
    multi_scale, _ = student_predictors(info, states, model_path, device, dtype)
    prob = flatten_maps(predict_tiles(multi_scale, tiles, device), info.student_field(MSI_SCALES))
    params = replace(params, high=info.threshold, low=info.threshold / 2)
    refiner = train_refiner(tiles, prob, info.backbone, params, device, callbacks, dtype)
    states["refined"] = refiner.state_dict()
    info = replace(info, refined_output_stride=params.output_stride)
    save_model(model_path, info, states)


def train_model(
    tiles: TileSet,
    params: TrainParams,
    bands: tuple[int, ...],
    run_dir: Path,
    device: torch.device,
    callbacks: Callbacks,
    val_fraction: float = 0.2,
    resume: bool = False,
    refine_params: RefineParams | None = None,
    env: DistEnv = SINGLE,
) -> TrainResult:
    """Train KD-MSI on tagged tiles and write ``run_dir/model.pt``.

    After training, the thresholds are chosen on the held-out tiles' tags (all tiles when none
    are held out), the map ``detect --method auto`` runs is chosen on them
    (:mod:`core.train.method_choice`) and, when ``refine_params.epochs > 0``, the refinement
    network is trained on pseudo labels of all tagged tiles. With several ranks (``env``) all of
    them train; rank 0 alone then chooses the thresholds and the map and refines.
    """
    train_set, val_set = split_tags(tiles, val_fraction, params.seed, callbacks)
    longer = params.lengthened(len(train_set))
    if longer.epochs > params.epochs:
        params = longer
        callbacks.info(
            f"Training {params.epochs} epochs: {len(train_set)} tiles make short epochs, and "
            f"at least {params.min_steps} steps were asked for."
        )
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
            "processes": env.world_size,
        },
    )
    trainer = Trainer(train_set, val_set, params, info, run_dir, device, callbacks, env)
    if resume:
        trainer.resume()
    result = trainer.run()
    if not env.is_main:
        return result
    dtype = trainer.amp_dtype
    del trainer  # its networks, optimizer and batches are no longer needed
    choice = choose_after_training(
        result.model_path, tiles, val_set, device, callbacks, dtype, val_fraction,
        params.affinity_rounds,
    )  # fmt: skip
    if choice is not None:
        result = replace(
            result, method=choice.method, reliable=choice.reliable, leader=choice.leader
        )
    if refine_params is not None and refine_params.epochs > 0:
        backbone = {"pretrained": params.pretrained, "weights": params.weights}
        refine_params = replace(refine_params, **backbone)  # the backbone weights training used
        refine(result.model_path, tiles, refine_params, device, callbacks, dtype)
        result = replace(result, method=resolve_method("auto", result.model_path))
    return result
