"""Where to tag next: score every tile of a tag layer with the model's map, pick tiles to look at.

The map is the one ``detect --method auto`` draws (chosen on the held-out tags after training),
at single scale (:mod:`core.detect.quick_map`). Each tile's score is its peak: the map's highest
value over the tile's valid pixels (:func:`core.detect.tile_ranking.tile_peaks`), so a score at
or above the map's single-scale threshold means the map puts change pixels in the tile, which is
what a *changed* tag means. Two kinds of tiles are suggested: the ``count`` untagged tiles with
the highest scores (``most_change``: where the map sees the most change; a tag there confirms
its clearest detections or corrects its loudest false alarms), and the tagged tiles whose score
contradicts their tag (``disagrees``: a changed tag where the map finds no change pixel, or an
unchanged tag where it finds some; a mistake in the tag or something the model has not learned
yet). No pixel label is used. (Until session 22 the untagged tiles suggested were those whose
score lay closest to the threshold, the ones the model was least sure about: on the transfer
suite, 24 random tags and 24 such tiles gave worse maps than 48 random tags; 24 random tags and
the 24 highest peaks passed issue 18's rule against them on three seeds, though only the
single-band family gained and the test tiles stayed level: BENCHMARKS.md, "Suggest: the tiles
where the map sees the most change". Until issue 19 the score was the tile's mean probability;
until issue 18's map choice it was always the student's map, whatever map detect drew.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from osgeo import ogr

from core.callbacks import Callbacks
from core.data.magnitude import pair_cue
from core.data.tags import TaggedTile, TagLayer, check_layer_fits, read_tags
from core.data.tilesets import load_tiles
from core.detect.quick_map import QuickMap, quick_map, quick_scores
from core.detect.tile_ranking import most_changed, tile_peaks
from core.errors import KdmsiError
from core.io.gpkg import polygon_layer, window_polygon
from core.io.grid import Grid
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.models.model_file import ModelInfo, load_model

ogr.UseExceptions()
LAYER = "suggestions"
MOST_CHANGE = "most_change"
DISAGREES = "disagrees"
CHUNK_TILES = 32


@dataclass(frozen=True)
class TileScore:
    """The student's score of one tile and why it is suggested.

    Attributes:
        tagged: the tile and its tag (None when untagged).
        score: highest change probability over the tile's valid pixels (NaN without any).
        reason: ``most_change``, ``disagrees`` or ``""`` (not suggested).
    """

    tagged: TaggedTile
    score: float
    reason: str = ""


@dataclass(frozen=True)
class SuggestParams:
    """How to score and how many tiles to suggest.

    Attributes:
        count: number of untagged tiles to suggest (those where the map sees the most change).
        bands: 1-based bands (None: the model's).
        batch_size: tiles per forward pass.
    """

    count: int = 20
    bands: tuple[int, ...] | None = None
    batch_size: int = 8


def choose(scores: list[TileScore], threshold: float, count: int) -> list[TileScore]:
    """Mark the ``count`` untagged tiles with the highest scores and the contradicted tags.

    Returns:
        The suggested tiles, the untagged ones first (highest score first), then the
        disagreeing tags (most confident contradiction first).
    """
    scored = [s for s in scores if not np.isnan(s.score)]
    untagged = [s for s in scored if s.tagged.label is None]
    highest = most_changed(np.array([s.score for s in untagged]), count)
    to_tag = [TileScore(untagged[i].tagged, untagged[i].score, MOST_CHANGE) for i in highest]
    wrong = [
        TileScore(s.tagged, s.score, DISAGREES)
        for s in scored
        if s.tagged.label is not None and int(s.score >= threshold) != int(s.tagged.label)
    ]
    wrong.sort(key=lambda s: -abs(s.score - threshold))
    return to_tag + wrong


def _check_layer(layer: TagLayer, pair: RasterPair, tags_path: Path) -> None:
    """The tag layer must have been made for a raster of this pair's size."""
    size = (int(layer.meta.get("width", -1)), int(layer.meta.get("height", -1)))
    if size != (pair.grid.width, pair.grid.height):
        raise KdmsiError(
            f"The tag layer {tags_path} was made for a {size[0]}x{size[1]} raster, not "
            f"{pair.before_path} ({pair.grid.width}x{pair.grid.height}); make a grid for this pair."
        )
    if not layer.tiles:
        raise KdmsiError(f"The tag layer {tags_path} holds no tile; create it with `kdmsi grid`.")


def _bands(info: ModelInfo, bands: tuple[int, ...] | None, model_path: Path) -> tuple[int, ...]:
    """The bands to read: the given ones (checked against the model) or the model's."""
    bands = bands or tuple(info.bands)
    if len(bands) != info.in_channels:
        raise KdmsiError(
            f"The model {model_path} was trained on {info.in_channels} band(s) {info.bands} but "
            f"{len(bands)} were given; pass --bands with {info.in_channels} bands."
        )
    return bands


def score_tiles(
    model_path: Path,
    before: Path,
    after: Path,
    tags_path: Path,
    device: torch.device,
    params: SuggestParams,
    callbacks: Callbacks,
) -> tuple[list[TileScore], Grid, QuickMap]:
    """Score every tile of a tag layer with the model's chosen map at single scale.

    Returns:
        The scores in tile order, A's grid and the map scored (with its threshold).
    """
    info, states = load_model(model_path)
    bands = _bands(info, params.bands, model_path)
    layer = read_tags(tags_path)
    chosen = quick_map(info)
    scores: list[TileScore] = []
    with RasterPair.open(before, after, bands, callbacks) as pair:
        _check_layer(layer, pair, tags_path)
        check_layer_fits(layer, pair.grid, Path(tags_path), (Path(before), Path(after)), callbacks)
        size = int(layer.meta.get("tile", info.tile))
        stretch = compute_stretch(pair)
        cva = pair_cue(pair, stretch) if chosen.needs_pair_threshold else None
        for start in range(0, len(layer.tiles), CHUNK_TILES):
            callbacks.check_canceled()
            chunk = layer.tiles[start : start + CHUNK_TILES]
            windows = [t.tile for t in chunk]
            tiles = load_tiles(pair, stretch, windows, [0] * len(chunk), size, "", cva)
            prob = quick_scores(chosen, info, states, model_path, tiles, device, params.batch_size)
            values = tile_peaks(prob, tiles.valid)
            scores += [TileScore(t, float(v)) for t, v in zip(chunk, values)]
            callbacks.progress(len(scores) / len(layer.tiles), f"{len(scores)} tiles scored")
        grid = pair.grid
    return scores, grid, chosen


def write_suggestions(
    path: Path, grid: Grid, suggestions: list[TileScore], overwrite: bool = False
) -> None:
    """Write the suggested tiles as a GeoPackage of polygons in A's CRS.

    Fields: ``tile_id``, ``score``, ``label`` (the tag, NULL when untagged), ``reason`` and
    ``rank`` (1 = look at it first, per reason).
    """
    fields = [
        ("tile_id", ogr.OFTInteger),
        ("score", ogr.OFTReal),
        ("label", ogr.OFTInteger),
        ("reason", ogr.OFTString),
        ("rank", ogr.OFTInteger),
    ]
    ranks: dict[str, int] = {}
    with polygon_layer(path, grid, LAYER, fields, "suggestions file", overwrite) as layer:
        for item in suggestions:
            ranks[item.reason] = ranks.get(item.reason, 0) + 1
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("tile_id", int(item.tagged.tile.tile_id))
            feature.SetField("score", round(float(item.score), 4))
            if item.tagged.label is not None:
                feature.SetField("label", int(item.tagged.label))
            feature.SetField("reason", item.reason)
            feature.SetField("rank", ranks[item.reason])
            feature.SetGeometry(window_polygon(grid, item.tagged.tile.window))
            layer.CreateFeature(feature)
