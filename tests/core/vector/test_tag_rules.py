"""Tests of core.vector.tag_rules: polygons respect the user's tags.

A 96 x 64 px probability raster cut into six 32 px tiles: change blobs lie in a tile tagged
unchanged (they must give no polygon) and in a tile tagged changed; another tile tagged changed
holds no change (it must be named). Runs the real ``kdmsi vectorize --tags`` in-process.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import ogr

from core.cli.main import main
from core.cli.protocol import run_problems
from core.data.tags import write_tags
from core.data.tiles import TileSpec
from core.errors import KdmsiError
from core.io.rasters import grid_of, open_raster
from core.vector.tag_rules import TagRules
from core.vector.vectorize import VectorizeParams, vectorize

# tile ids, row-major over 3 columns x 2 rows: 0 1 2 / 3 4 5
LABELS = {0: 0, 1: 1, 2: 1, 3: None, 4: 0, 5: None}


@pytest.fixture
def tagged_map(tmp_path, write_raster):
    prob = np.zeros((64, 96), np.float32)
    prob[4:20, 4:20] = 0.9  # tile 0, tagged unchanged: must vanish
    prob[8:24, 40:56] = 0.8  # tile 1, tagged changed: kept
    prob[40:56, 70:90] = 0.7  # tile 5, untagged: kept
    prob[36:60, 36:60] = 0.6  # tile 4, tagged unchanged: must vanish
    path = write_raster(tmp_path / "prob.tif", prob)
    grid = grid_of(open_raster(path, "map"))
    tiles = TileSpec(96, 64, 32).tiles()
    meta = {"width": 96, "height": 64, "tile": 32}
    write_tags(tmp_path / "tags.gpkg", grid, tiles, LABELS, meta)
    return path, tmp_path / "tags.gpkg"


def polygons(path) -> list[ogr.Geometry]:
    ds = ogr.Open(str(path))
    return [f.GetGeometryRef().Clone() for f in ds.GetLayer(0)]


def test_tiles_tagged_unchanged_get_no_polygon(tagged_map, tmp_path):
    prob, tags = tagged_map
    plain = vectorize(prob, tmp_path / "all.gpkg", VectorizeParams(0.5))
    assert plain.count == 4
    result = vectorize(prob, tmp_path / "tagged.gpkg", VectorizeParams(0.5, tags=tags))
    assert result.count == 2
    assert result.cleared_tiles == (0, 4)
    assert result.changed_without_change == (2,)
    # the kept polygons are those of tile 1 (changed) and tile 5 (untagged)
    xs = sorted(round(g.Centroid().GetX()) for g in polygons(tmp_path / "tagged.gpkg"))
    assert len(xs) == 2 and xs[0] < xs[1]


def test_the_command_reports_the_tags_in_sentences_and_metrics(tagged_map, tmp_path, capsys):
    prob, tags = tagged_map
    out = tmp_path / "c.shp"
    status = main(["vectorize", "--prob", str(prob), "--out", str(out), "--tags", str(tags)])
    assert status == 0
    err = capsys.readouterr().err
    assert "2 tile(s) you tagged unchanged" in err
    assert "1 tile(s) you tagged changed got no change polygon" in err and "tile ids 2" in err
    args = ["vectorize", "--prob", str(prob), "--out", str(tmp_path / "d.shp")]
    status = main([*args, "--tags", str(tags), "--jsonl"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert run_problems(events, "vectorize", status) == []
    metrics = events[-1]["metrics"]
    assert metrics["cleared_unchanged_tiles"] == 2 and metrics["changed_tiles_without_change"] == 1


def test_a_tag_layer_of_another_raster_is_refused(tagged_map, tmp_path, write_raster):
    _, tags = tagged_map
    other = write_raster(tmp_path / "other.tif", np.zeros((50, 50), np.float32))
    with pytest.raises(KdmsiError, match="made for a 96x64 raster"):
        TagRules.from_layer(tags, 50, 50, other)


@pytest.mark.parametrize("what", ["weak", "speck"])
def test_a_changed_tile_whose_change_gets_no_polygon_is_reported(
    tagged_map, tmp_path, write_raster, read_array, what
):
    prob_path, tags = tagged_map
    prob = read_array(prob_path)
    if what == "weak":
        prob[4:20, 68:84] = 0.55  # tile 2: a region never reaching 1.25 x 0.5
    else:
        prob[4:6, 68:70] = 0.95  # tile 2: a strong speck of 4 pixels
    changed = write_raster(tmp_path / f"{what}.tif", prob)
    plain = vectorize(changed, tmp_path / f"{what}_all.gpkg", VectorizeParams(0.5, tags=tags))
    assert plain.changed_without_change == ()  # every region drawn: tile 2 has one
    strict = VectorizeParams(0.5, tags=tags, min_pixels=9, peak_ratio=1.25)
    result = vectorize(changed, tmp_path / f"{what}.gpkg", strict)
    assert result.changed_without_change == (2,)
    assert result.count == 2  # tile 1's and tile 5's regions
