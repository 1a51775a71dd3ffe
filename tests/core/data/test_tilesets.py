"""Tests of the in-memory tile sets: reading, padding edge tiles, subsets and pooling."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.tiles import TileSpec
from core.data.tilesets import TileSet, load_tiles
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch, Stretch
from core.io.windows import Window

IDENTITY = PairStretch(Stretch((0.0,) * 3, (255.0,) * 3), Stretch((0.0,) * 3, (255.0,) * 3))


def coded_image(width: int, height: int, offset: int = 0) -> np.ndarray:
    """uint8 ``[3, rows, cols]`` whose values encode row, column and band (mod 256)."""
    rows, cols = np.mgrid[0:height, 0:width]
    bands = [(rows * 5 + cols * 3 + 17 * b + offset) % 251 + 1 for b in range(3)]
    return np.stack(bands).astype(np.uint8)


@pytest.fixture
def pair_files(tmp_path, write_raster):
    def make(width: int, height: int, nodata_block: bool = False) -> tuple:
        a = coded_image(width, height)
        b = coded_image(width, height, offset=100)
        if nodata_block:
            a[:, 2:6, 3:9] = 0
        before = write_raster(
            tmp_path / f"a{width}x{height}.tif", a, nodata=0 if nodata_block else None
        )
        after = write_raster(tmp_path / f"b{width}x{height}.tif", b)
        return before, after, a, b

    return make


def test_full_tiles_are_read_as_is(pair_files):
    before, after, a, b = pair_files(64, 64)
    tiles = TileSpec(64, 64, 32).tiles()
    with RasterPair.open(before, after) as pair:
        ts = load_tiles(pair, IDENTITY, tiles, [0, 1, 0, 1], 32, "pair")
    assert ts.before.dtype == np.uint8 and ts.before.shape == (4, 3, 32, 32)
    assert ts.valid.shape == (4, 32, 32) and ts.valid.all()
    for i, tile in enumerate(tiles):
        rows, cols = tile.window.slices
        assert np.array_equal(ts.before[i], a[:, rows, cols])
        assert np.array_equal(ts.after[i], b[:, rows, cols])
    assert ts.labels.dtype == np.int8 and list(ts.labels) == [0, 1, 0, 1]
    assert ts.names == [f"pair#{t.tile_id}" for t in tiles]
    assert ts.windows == [t.window for t in tiles]
    assert ts.tile_size == 32


def test_edge_tiles_are_padded_by_reflection_and_marked_invalid(pair_files):
    width, height = 50, 52  # edge tiles 18 x 20 pixels: more than half a tile, so reflected
    before, after, a, b = pair_files(width, height)
    tiles = TileSpec(width, height, 32).tiles()
    assert len(tiles) == 4
    with RasterPair.open(before, after) as pair:
        ts = load_tiles(pair, IDENTITY, tiles, [1] * 4, 32, "edge")
    corner = tiles[3]
    w = corner.window
    assert (w.width, w.height) == (18, 20)
    rows, cols = w.slices
    raw_a, raw_b = a[:, rows, cols], b[:, rows, cols]
    pad = [(0, 0), (0, 32 - w.height), (0, 32 - w.width)]
    assert np.array_equal(ts.before[3], np.pad(raw_a, pad, mode="reflect"))
    assert np.array_equal(ts.after[3], np.pad(raw_b, pad, mode="reflect"))
    # Reflection mirrors about the last pixel (which is not repeated).
    assert np.array_equal(ts.before[3][:, : w.height, w.width], raw_a[:, :, w.width - 2])
    assert np.array_equal(ts.before[3][:, w.height, : w.width], raw_a[:, w.height - 2, :])
    assert ts.valid[3, : w.height, : w.width].all()
    assert not ts.valid[3, w.height :, :].any()
    assert not ts.valid[3, :, w.width :].any()
    # The right-edge tile is full height but narrow.
    right = tiles[1].window
    assert (right.width, right.height) == (18, 32)
    assert ts.valid[1, :, :18].all() and not ts.valid[1, :, 18:].any()


def test_thin_edge_tiles_are_padded_with_edge_values(pair_files):
    before, after, a, _ = pair_files(40, 40)  # edge tiles 8 px: too thin to reflect
    tiles = TileSpec(40, 40, 32).tiles()
    with RasterPair.open(before, after) as pair:
        ts = load_tiles(pair, IDENTITY, tiles, [0] * len(tiles), 32, "thin")
    last = tiles[-1].window
    assert (last.width, last.height) == (8, 8)
    raw = a[:, last.row :, last.col :]
    expected = np.pad(raw, [(0, 0), (0, 24), (0, 24)], mode="edge")
    assert np.array_equal(ts.before[-1], expected)
    assert ts.valid[-1].sum() == 64


def test_nodata_pixels_are_zero_and_invalid(pair_files):
    before, after, _, _ = pair_files(32, 32, nodata_block=True)
    with RasterPair.open(before, after) as pair:
        ts = load_tiles(pair, IDENTITY, TileSpec(32, 32, 32).tiles(), [1], 32, "nd")
    assert not ts.valid[0, 2:6, 3:9].any()
    assert ts.valid[0].sum() == 32 * 32 - 4 * 6
    assert (ts.before[0][:, 2:6, 3:9] == 0).all()
    assert (ts.after[0][:, 2:6, 3:9] == 0).all()  # B is zeroed where A has no data
    assert (ts.after[0][:, ts.valid[0]] > 0).all()


def test_stretch_is_applied_and_quantised(pair_files):
    before, after, a, _ = pair_files(32, 32)
    half = PairStretch(Stretch((0.0,) * 3, (127.5,) * 3), Stretch((0.0,) * 3, (255.0,) * 3))
    with RasterPair.open(before, after) as pair:
        ts = load_tiles(pair, half, TileSpec(32, 32, 32).tiles(), [0], 32, "s")
    expected = np.clip(np.rint(a.astype(np.float64) * 2), 0, 255).astype(np.uint8)
    assert np.abs(ts.before[0].astype(int) - expected.astype(int)).max() <= 1
    assert ts.before[0].max() == 255


# --- TileSet ------------------------------------------------------------------------------


def make_set(labels: list[int], size: int = 8, bands: int = 3, tag: str = "s") -> TileSet:
    n = len(labels)
    before = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, bands, size, size), np.uint8
    )
    return TileSet(
        before,
        before + 100,
        np.ones((n, size, size), dtype=bool),
        np.asarray(labels, dtype=np.int8),
        [f"{tag}#{i}" for i in range(n)],
        [Window(i * size, 0, size, size) for i in range(n)],
    )


def test_counts_and_len():
    ts = make_set([1, 0, 0, 1, 1])
    assert len(ts) == 5
    assert ts.counts == {"changed": 3, "unchanged": 2}
    assert make_set([]).counts == {"changed": 0, "unchanged": 0}


def test_subset_keeps_every_field_aligned():
    ts = make_set([1, 0, 0, 1, 1])
    sub = ts.subset([4, 1])
    assert len(sub) == 2
    assert list(sub.labels) == [1, 0]
    assert sub.names == ["s#4", "s#1"]
    assert sub.windows == [ts.windows[4], ts.windows[1]]
    assert (sub.before[0] == 4).all() and (sub.after[1] == 101).all()
    assert sub.counts == {"changed": 1, "unchanged": 1}
    empty = ts.subset(np.array([], dtype=np.int64))
    assert len(empty) == 0 and empty.before.shape == (0, 3, 8, 8)
    # A subset is a copy: changing it leaves the original alone.
    sub.before[:] = 0
    assert (ts.before[4] == 4).all()


def test_concat_pools_in_order():
    first, second = make_set([1, 0], tag="x"), make_set([0, 0, 1], tag="y")
    pooled = TileSet.concat([first, second])
    assert len(pooled) == 5
    assert pooled.names == ["x#0", "x#1", "y#0", "y#1", "y#2"]
    assert list(pooled.labels) == [1, 0, 0, 0, 1]
    assert pooled.counts == {"changed": 2, "unchanged": 3}
    assert np.array_equal(pooled.before[2:], second.before)
    assert pooled.windows[2:] == second.windows
