"""Tests of cutting benchmark tiles out of whole-pair maps (the ``detect`` rows)."""

from __future__ import annotations

import numpy as np

from core.choices import DEFAULTS
from core.data.tilesets import TileSet
from core.eval.benchmark_data import BenchmarkData
from core.eval.whole_pair import polygon_map, read_map, tiles_from_maps
from core.io.windows import Window


def _data(windows: list[Window], names: list[str]) -> BenchmarkData:
    n = len(windows)
    tiles = TileSet(
        before=np.zeros((n, 3, 4, 4), np.uint8),
        after=np.zeros((n, 3, 4, 4), np.uint8),
        valid=np.ones((n, 4, 4), bool),
        labels=np.zeros(n, np.int8),
        names=names,
        windows=windows,
    )
    return BenchmarkData(tiles, np.zeros((n, 4, 4), bool), np.arange(n), np.arange(0))


def test_tiles_are_cut_from_their_own_pair_at_their_window():
    maps = {
        "d/a": np.arange(36, dtype=np.float32).reshape(6, 6),
        "d/b": -np.arange(36, dtype=np.float32).reshape(6, 6),
    }
    # the second tile of pair a is an edge tile: 2 x 2 of data, the rest is padding
    data = _data(
        [Window(0, 0, 4, 4), Window(4, 4, 2, 2), Window(2, 1, 4, 4)],
        ["d/a#0", "d/a#3", "d/b#1"],
    )
    out = tiles_from_maps(data, maps)
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], maps["d/a"][:4, :4])
    np.testing.assert_array_equal(out[1, :2, :2], maps["d/a"][4:, 4:])
    assert not out[1, 2:].any() and not out[1, :, 2:].any()
    np.testing.assert_array_equal(out[2], maps["d/b"][1:5, 2:6])


def test_read_map_gives_band_one_as_float32(tmp_path, write_raster):
    values = np.arange(20, dtype=np.uint8).reshape(1, 4, 5) * 10
    path = tmp_path / "prob.tif"
    write_raster(path, values)
    out = read_map(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values[0].astype(np.float32))


def test_the_product_map_clears_the_regions_its_polygons_leave_out():
    values = np.zeros((6, 9), np.float32)
    values[1:3, 1:3] = 0.32  # a weak region: never reaches the peak
    values[1:4, 5:8] = 0.31
    values[2, 6] = 0.3 * DEFAULTS.peak_ratio  # a region that does, by one pixel
    values[5, 0] = 0.1  # below the threshold: left as it is
    out = polygon_map(values, 0.3)
    assert out.dtype == np.float32 and not out[1:3, 1:3].any()
    np.testing.assert_array_equal(out[:, 4:], values[:, 4:])
    assert out[5, 0] == np.float32(0.1)
