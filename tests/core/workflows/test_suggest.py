"""``kdmsi suggest``: tiles the model is least sure about and tags it disagrees with.

A tiny model (random ResNet-18, 1 epoch, 32 px tiles, CPU) is trained on half the tiles of the
synthetic scene; the other half stay untagged.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from osgeo import gdal, ogr, osr

from core.callbacks import Callbacks
from core.cli.main import main
from core.data.synthetic import make_scene
from core.data.tags import TaggedTile, read_tags, tags_from_mask, write_tags
from core.data.tiles import Tile, pair_tiles
from core.data.trainsets import tiles_from_tag_layer
from core.detect.cva import run_cva
from core.io.rasters import RasterPair
from core.io.windows import Window
from core.models.model_file import load_model, save_model
from core.train.pipeline import train_model
from core.train.trainer import TrainParams
from core.workflows.suggest import (
    DISAGREES,
    MOST_CHANGE,
    SuggestParams,
    TileScore,
    choose,
    score_tiles,
)

TILE = 32
PARAMS = TrainParams(backbone="resnet18", pretrained=False, epochs=1, batch_size=8, seed=0)


def tagged(tile_id: int, label: int | None) -> TaggedTile:
    return TaggedTile(Tile(tile_id, 0, tile_id, Window(tile_id * 8, 0, 8, 8)), label)


def test_choose_picks_the_highest_untagged_and_contradicted_tags():
    scores = [
        TileScore(tagged(0, None), 0.31),
        TileScore(tagged(1, None), 0.9),
        TileScore(tagged(2, None), 0.29),
        TileScore(tagged(3, None), float("nan")),
        TileScore(tagged(4, 1), 0.1),  # tagged changed, model says unchanged
        TileScore(tagged(5, 0), 0.95),  # tagged unchanged, model says changed
        TileScore(tagged(6, 1), 0.8),  # agrees
        TileScore(tagged(7, 0), 0.05),  # agrees
    ]
    chosen = choose(scores, threshold=0.3, count=2)
    assert [(s.tagged.tile.tile_id, s.reason) for s in chosen] == [
        (1, MOST_CHANGE),
        (0, MOST_CHANGE),
        (5, DISAGREES),
        (4, DISAGREES),
    ]
    assert [s.tagged.tile.tile_id for s in choose(scores, 0.3, 0)] == [5, 4]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic pair, a tag layer with half its tiles tagged, and a 1-epoch model."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("suggest")
    files = make_scene(root / "scene", size=128)
    with RasterPair.open(files.before, files.after) as pair:
        tiles = pair_tiles(pair, TILE)
        truth = tags_from_mask(files.label, tiles, pair.grid)
        labels = {t.tile_id: truth[t.tile_id] for t in tiles[::2]}
        meta = {"tile": TILE, "width": pair.grid.width, "height": pair.grid.height}
        write_tags(root / "tags.gpkg", pair.grid, tiles, labels, meta)
    tileset = tiles_from_tag_layer(files.before, files.after, root / "tags.gpkg", None, Callbacks())
    result = train_model(
        tileset, PARAMS, (1, 2, 3), root / "run", torch.device("cpu"), Callbacks(), 0.0
    )
    return {"files": files, "tags": root / "tags.gpkg", "model": result.model_path, "root": root}


def run_cli(*args: object) -> tuple[int, list[dict]]:
    """``kdmsi ARGS --jsonl`` in this process; its exit status and events."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*map(str, args), "--jsonl"])
    return status, [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_suggest_writes_scored_tiles_in_the_pair_crs(trained):
    out = trained["root"] / "suggestions.gpkg"
    files = trained["files"]
    status, events = run_cli(
        *("suggest", "-a", files.before, "-b", files.after, "--model", trained["model"]),
        *("--tags", trained["tags"], "--out", out, "--count", 3, "--device", "cpu"),
    )
    assert status == 0, events
    result = events[-1]
    assert result["event"] == "result" and result["outputs"]["suggestions"] == str(out)
    info, _ = load_model(trained["model"])
    # no tag was held out, so the default map: the network combined with CVA, at single scale
    assert result["metrics"]["method"] == info.auto_method == "kdmsi-cva"
    assert result["metrics"]["threshold"] == pytest.approx(info.threshold_fused_single)
    assert result["metrics"]["tiles"] == 16 and result["metrics"]["most_change"] == 3
    assert any(e["event"] == "progress" and e["stage"] == "suggest" for e in events)

    ds = ogr.Open(str(out))
    layer = ds.GetLayerByName("suggestions")
    srs = layer.GetSpatialRef()
    srs.AutoIdentifyEPSG()
    assert srs.GetAuthorityCode(None) == "32633"
    rows = [
        {k: f.GetField(k) for k in ("tile_id", "score", "label", "reason", "rank")}
        | {"bounds": f.GetGeometryRef().GetEnvelope()}
        for f in layer
    ]
    assert len(rows) == 3 + result["metrics"]["disagrees"]
    tags = {t.tile.tile_id: t.label for t in read_tags(trained["tags"]).tiles}
    threshold = info.threshold_fused_single
    for row in rows:
        assert 0.0 <= row["score"] <= 1.0
        assert row["label"] == tags[row["tile_id"]]
        if row["reason"] == MOST_CHANGE:
            assert row["label"] is None
        else:
            assert row["reason"] == DISAGREES
            assert int(row["score"] >= threshold) != row["label"]
        width = row["bounds"][1] - row["bounds"][0]
        assert width == pytest.approx(TILE * 0.5)  # 0.5 m pixels
    to_tag = [r for r in rows if r["reason"] == MOST_CHANGE]
    assert [r["rank"] for r in to_tag] == [1, 2, 3]
    assert [r["score"] for r in to_tag] == sorted((r["score"] for r in to_tag), reverse=True)
    scored, _, _ = score_tiles(
        trained["model"], files.before, files.after, trained["tags"], torch.device("cpu"),
        SuggestParams(), Callbacks(),
    )  # fmt: skip
    highest = sorted((s.score for s in scored if s.tagged.label is None), reverse=True)[:3]
    assert [r["score"] for r in to_tag] == pytest.approx(highest, abs=1e-4)  # the highest peaks
    ds = None
    assert osr.SpatialReference(wkt=srs.ExportToWkt()).IsProjected()


def test_suggest_refuses_a_tag_layer_of_another_pair(trained, tmp_path):
    other = make_scene(tmp_path / "other", size=96)
    status, events = run_cli(
        *("suggest", "-a", other.before, "-b", other.after, "--model", trained["model"]),
        *("--tags", trained["tags"], "--out", tmp_path / "s.gpkg", "--device", "cpu"),
    )
    assert status == 2
    assert events[-1]["event"] == "error" and "128x128" in events[-1]["message"]
    assert not Path(tmp_path / "s.gpkg").exists()


def test_suggest_scores_with_the_map_detect_draws(trained, tmp_path):
    info, states = load_model(trained["model"])
    files = trained["files"]
    model = tmp_path / "cva.pt"  # a model whose held-out tags chose change vector analysis
    save_model(model, replace(info, method_choice={"method": "cva", "reason": "test"}), states)
    out = tmp_path / "suggestions.gpkg"
    status, events = run_cli(
        *("suggest", "-a", files.before, "-b", files.after, "--model", model),
        *("--tags", trained["tags"], "--out", out, "--count", 16, "--device", "cpu"),
    )
    assert status == 0, events
    assert events[-1]["metrics"]["method"] == "cva"
    assert events[-1]["metrics"]["threshold"] == 0.5  # CVA's map puts its threshold at 0.5
    ds = ogr.Open(str(out))  # keep the dataset alive while its layer is read
    scores = {f.GetField("tile_id"): f.GetField("score") for f in ds.GetLayerByName("suggestions")}
    ds = None
    with RasterPair.open(files.before, files.after) as pair:  # CVA's own map of the pair
        run_cva(pair, tmp_path / "cva.tif", tmp_path / "cva_mask.tif")
        windows = {t.tile_id: t.window for t in pair_tiles(pair, TILE)}
    whole = gdal.Open(str(tmp_path / "cva.tif")).ReadAsArray()
    untagged = [i for i, label in tags_of(trained["tags"]).items() if label is None]
    assert set(untagged) <= set(scores)
    for tile_id in untagged:
        w = windows[tile_id]
        peak = whole[w.row : w.row_end, w.col : w.col_end].max()
        assert scores[tile_id] == pytest.approx(peak, abs=0.01)  # tiles are quantised to 8 bits


def tags_of(path: Path) -> dict[int, int | None]:
    return {t.tile.tile_id: t.label for t in read_tags(path).tiles}
