"""Tests of core.data.tiles: the tile grid a person tags, and dropping tiles without data."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.tiles import MIN_EDGE_FRACTION, TileSpec, pair_tiles, valid_fractions
from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.windows import Window


def test_counts_and_clipped_edge_tiles():
    spec = TileSpec(1000, 600, 256)
    tiles = spec.tiles()
    # columns start at 0, 256, 512, 768 (232 px left); rows at 0, 256, 512 (88 px left)
    assert (spec.rows, spec.cols) == (3, 4)
    assert len(tiles) == 12
    assert [t.tile_id for t in tiles] == list(range(12))
    last = tiles[-1]
    assert (last.row, last.col) == (2, 3)
    assert last.window == Window(768, 512, 232, 88)
    assert tiles[3].window == Window(768, 0, 232, 256)
    assert tiles[4].window == Window(0, 256, 256, 256)
    for tile in tiles:
        assert tile.tile_id == tile.row * spec.cols + tile.col
        assert tile.window.col_end <= 1000 and tile.window.row_end <= 600


def test_tiles_without_slivers_cover_the_raster_once():
    spec = TileSpec(700, 300, 100)
    hits = np.zeros((300, 700), dtype=int)
    for tile in spec.tiles():
        hits[tile.window.slices] += 1
    assert (hits == 1).all()


def test_sliver_edge_tiles_are_dropped():
    size = 64
    smallest_kept = int(np.ceil(size * MIN_EDGE_FRACTION))
    kept = TileSpec(2 * size + smallest_kept, size, size)
    dropped = TileSpec(2 * size + smallest_kept - 1, size, size)
    assert kept.cols == 3
    assert kept.tiles()[-1].window.width == smallest_kept
    assert dropped.cols == 2
    assert max(t.window.col_end for t in dropped.tiles()) == 2 * size


def test_a_raster_smaller_than_one_tile_is_one_tile():
    tiles = TileSpec(100, 50, 256).tiles()
    assert len(tiles) == 1
    assert tiles[0].window == Window(0, 0, 100, 50)
    assert (tiles[0].row, tiles[0].col) == (0, 0)


def test_stride_makes_overlapping_tiles():
    spec = TileSpec(512, 256, 256, stride=128)
    assert spec.step == 128
    assert spec.cols == 4  # 0, 128, 256 and the clipped 384 (128 px, not a sliver)
    assert spec.rows == 2  # 0 and the clipped 128
    cols = [t.window.col for t in spec.tiles() if t.row == 0]
    assert cols == [0, 128, 256, 384]
    assert TileSpec(512, 256, 256).step == 256


@pytest.mark.parametrize(("size", "stride"), [(4, 0), (7, 7), (64, -1)])
def test_too_small_tiles_are_refused(size, stride):
    with pytest.raises(KdmsiError, match="too small"):
        TileSpec(100, 100, size, stride).tiles()


def test_pair_tiles_drops_tiles_without_data(tmp_path, write_raster):
    before = np.full((64, 64), 100, dtype=np.uint8)
    before[:, :32] = 0  # the two left tile columns are nodata
    before[:16, 40] = 0  # one pixel column of the top third-column tile only
    path_a = write_raster(tmp_path / "a.tif", before, nodata=0)
    path_b = write_raster(tmp_path / "b.tif", np.full((64, 64), 50, dtype=np.uint8))
    with RasterPair.open(path_a, path_b) as pair:
        all_tiles = TileSpec(64, 64, 16).tiles()
        fractions = valid_fractions(pair, all_tiles)
        tiles = pair_tiles(pair, 16)
    assert len(all_tiles) == 16
    assert sorted({t.col for t in tiles}) == [2, 3]
    assert len(tiles) == 8
    by_id = dict(zip((t.tile_id for t in all_tiles), fractions))
    assert by_id[0] == 0.0
    assert by_id[2] == pytest.approx(15 / 16)  # tile (0, 2) lost one column of 16
    assert by_id[3] == 1.0
    # tiles keep their ids from the full grid, so a tag layer stays comparable
    assert [t.tile_id for t in tiles] == [2, 3, 6, 7, 10, 11, 14, 15]


def test_pair_tiles_of_a_full_pair_keeps_everything(tmp_path, write_raster, scene):
    path = write_raster(tmp_path / "a.tif", scene(100, 70, 1))
    with RasterPair.open(path, path) as pair:
        assert len(pair_tiles(pair, 32)) == TileSpec(100, 70, 32).rows * TileSpec(100, 70, 32).cols
