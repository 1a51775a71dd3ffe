"""Tests of core.io.block_maxima: each block's largest value, stored by the writer, checked on read.

The bounds must lie above every block's true maximum (a skipped block can never hold change) and
within one step of it (or they skip nothing), and a raster rewritten by another tool must not be
trusted.
"""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from core.io.block_maxima import UNKNOWN, BlockMaxima, may_reach, read_block_maxima
from core.io.geotiff import GeoTiffWriter
from core.io.grid import Grid
from core.io.windows import Window

gdal.UseExceptions()
GRID = Grid(700, 530, (500_000.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0))


def probability() -> np.ndarray:
    """Low noise with a few hot spots, a NaN block, a nodata block and awkward exact values."""
    prob = np.random.default_rng(0).uniform(0.0, 0.3, (GRID.height, GRID.width)).astype("f4")
    prob[300:310, 600:610] = 0.9  # a hot spot in block (1, 2)
    prob[0:256, 256:512] = np.nan  # block (0, 1): NaN only
    prob[256:512, 0:256] = -1.0  # block (1, 0): nodata only
    prob[512:, 0:256] *= 0.3  # the bottom (partial) row of blocks: below 0.09 but for
    prob[520, 10] = np.float32(51 / 255)  # a value exactly on a step
    prob[5, 5] = 1.0  # the largest probability there is
    return prob


def write(path, prob: np.ndarray, window: int = 96) -> None:
    """Write ``prob`` window by window (windows overlap blocks and each other's edges)."""
    with GeoTiffWriter(path, GRID, np.float32, nodata=-1) as out:
        for row in range(0, GRID.height, window):
            for col in range(0, GRID.width, window):
                part = prob[row : row + window, col : col + window]
                out.write(Window(col, row, part.shape[1], part.shape[0]), part)


def bounds_of(path) -> np.ndarray | None:
    """The stored bounds of ``path``'s band 1 (the dataset stays open while it is read)."""
    dataset = gdal.Open(str(path))
    return read_block_maxima(dataset.GetRasterBand(1))


def true_maxima(prob: np.ndarray, block: int = 256) -> np.ndarray:
    rows, cols = -(-prob.shape[0] // block), -(-prob.shape[1] // block)
    out = np.full((rows, cols), np.nan)
    for by in range(rows):
        for bx in range(cols):
            part = prob[by * block : (by + 1) * block, bx * block : (bx + 1) * block]
            out[by, bx] = np.nan if np.isnan(part).all() else np.nanmax(part)
    return out


def test_the_stored_bounds_lie_within_one_step_above_each_blocks_maximum(tmp_path):
    prob = probability()
    write(tmp_path / "p.tif", prob)
    dataset = gdal.Open(str(tmp_path / "p.tif"))
    bounds = read_block_maxima(dataset.GetRasterBand(1))
    truth = true_maxima(dataset.ReadAsArray())
    assert bounds.shape == truth.shape == (3, 3)
    assert bounds[0, 1] == 0 and bounds[1, 0] == 0  # NaN only, nodata only: nothing to read
    assert bounds[0, 0] == UNKNOWN  # holds 1.0: always read
    known = np.isfinite(truth) & (bounds < UNKNOWN) & (truth >= 0)
    assert known.sum() == 6
    assert (bounds[known] / 255.0 > truth[known]).all()  # above: never skips a reachable block
    assert (truth[known] >= (bounds[known] - 1) / 255.0).all()  # tight: one step at most
    assert bounds[2, 0] == 52  # 51/255 exactly: the bound is the next step
    assert gdal.Info(dataset).count("BLOCK_MAXIMA") == 0  # not in gdalinfo's view


@pytest.mark.parametrize(
    ("threshold", "expected"), [(0.5, [[1, 0, 0], [0, 0, 1], [0, 0, 0]]), (0.2, None)]
)
def test_may_reach_keeps_the_blocks_that_can_hold_the_threshold(tmp_path, threshold, expected):
    write(tmp_path / "p.tif", probability())
    reach = may_reach(bounds_of(tmp_path / "p.tif"), threshold)
    if expected is None:  # the noise (up to 0.3) reaches 0.2 in every block with valid pixels
        assert reach.sum() == 7 and not reach[0, 1] and not reach[1, 0]
    else:
        assert reach.astype(int).tolist() == expected
    edge = np.array([[52, 51, 0, UNKNOWN]], np.uint8)  # value 51/255 lies below bound 52
    assert may_reach(edge, 51 / 255).tolist() == [[True, False, False, True]]


def test_a_rewritten_raster_is_not_trusted(tmp_path):
    write(tmp_path / "p.tif", probability())
    options = ["TILED=YES", "COMPRESS=LZW"]
    gdal.Translate(str(tmp_path / "copy.tif"), str(tmp_path / "p.tif"), creationOptions=options)
    assert bounds_of(tmp_path / "copy.tif") is None
    edited = gdal.Open(str(tmp_path / "p.tif"), gdal.GA_Update)
    edited.GetRasterBand(1).WriteArray(np.full((10, 10), 0.95, np.float32), 300, 20)
    edited = None  # the block is written again, at another place in the file
    assert bounds_of(tmp_path / "p.tif") is None


def test_only_float_outputs_carry_bounds(tmp_path):
    with GeoTiffWriter(tmp_path / "m.tif", GRID, np.uint8, nodata=255) as out:
        out.write(Window(0, 0, GRID.width, GRID.height), np.ones((GRID.height, GRID.width)))
    assert bounds_of(tmp_path / "m.tif") is None


def test_updates_of_any_shape_fold_into_the_right_blocks():
    dataset = gdal.GetDriverByName("MEM").Create("", 300, 200, 1, gdal.GDT_Float32)
    tracker = BlockMaxima(dataset.GetRasterBand(1))  # MEM: one block per row (300 x 1)
    tracker.update(7, 250, np.full((3, 40), 0.5, np.float32))
    tracker.update(8, 0, np.array([[0.7]], np.float32))
    tracker.update(0, 0, np.empty((0, 5), np.float32))  # nothing written: nothing changes
    bounds = tracker.bounds()
    assert bounds.shape == (200, 1)
    assert bounds[7, 0] == bounds[9, 0] == 128 and bounds[8, 0] == 179
    assert (np.delete(bounds[:, 0], [7, 8, 9]) == 0).all()
