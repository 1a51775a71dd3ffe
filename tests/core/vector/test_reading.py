"""Tests of core.vector.reading: a raster detect wrote is read block by block where it can change.

A probability raster written by :class:`core.io.geotiff.GeoTiffWriter` carries its blocks' maxima;
vectorize then skips the blocks that cannot reach the threshold. Its polygons and statistics must be
those of the same raster read whole (a copy made by gdal_translate, which carries no trusted
maxima).
"""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from test_components import read  # (WKB, area, mean_prob, max_prob) per feature

from core.io.geotiff import GeoTiffWriter
from core.io.grid import Grid
from core.io.windows import Window
from core.vector import polygonize
from core.vector.polygonize import open_source
from core.vector.reading import blocks_to_read
from core.vector.vectorize import VectorizeParams, vectorize

gdal.UseExceptions()
GRID = Grid(1100, 900, (500_000.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0))


def sparse_probability(nodata: float) -> np.ndarray:
    """Low noise and a few blobs, one across four blocks, one on the raster's last pixels."""
    prob = np.random.default_rng(3).uniform(0.0, 0.4, (GRID.height, GRID.width)).astype("f4")
    prob[230:300, 240:270] = 0.7  # across the corner of four 256 px blocks
    prob[500:520, 600:900] = np.linspace(0.55, 0.95, 300, dtype="f4")
    prob[880:900, 1090:1100] = 0.6  # the bottom right corner (partial blocks)
    prob[505:510, 700:705] = nodata  # inside a blob: a hole where nodata hides pixels
    return prob


def write_pair(tmp_path, nodata: float) -> tuple:
    """The raster as detect writes it, and a plain copy of it."""
    ours = tmp_path / "detect.tif"
    prob = sparse_probability(nodata)
    with GeoTiffWriter(ours, GRID, np.float32, nodata=nodata) as out:
        for row in range(0, GRID.height, 128):
            part = prob[row : row + 128]
            out.write(Window(0, row, GRID.width, part.shape[0]), part)
    copy = tmp_path / "copy.tif"
    gdal.Translate(str(copy), str(ours), creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    return ours, copy


@pytest.mark.parametrize("nodata", [-1.0, 0.8])  # a nodata that cannot and one that can hide
def test_skipping_blocks_gives_the_polygons_of_the_whole_read(tmp_path, monkeypatch, nodata):
    ours, copy = write_pair(tmp_path, nodata)
    source = open_source(ours)
    reach = blocks_to_read(source, 0.5)
    assert reach is not None and 4 <= reach.sum() < reach.size / 2  # most blocks are skipped
    copied = open_source(copy)
    assert blocks_to_read(copied, 0.5) is None  # the copy is read whole
    monkeypatch.setattr(polygonize, "_TARGET_CHUNK_PIXELS", 512 * GRID.width)  # two chunks
    params = VectorizeParams(min_pixels=0)
    skipping = vectorize(ours, tmp_path / "skipping.shp", params)
    whole = vectorize(copy, tmp_path / "whole.shp", params)
    assert skipping.count == whole.count == 3  # the blob with a hole is one polygon
    assert skipping.total_area == whole.total_area
    assert sorted(read(tmp_path / "skipping.shp")) == sorted(read(tmp_path / "whole.shp"))


def test_a_threshold_every_block_reaches_reads_the_raster_whole(tmp_path):
    ours, _ = write_pair(tmp_path, -1.0)
    assert blocks_to_read(open_source(ours), 0.1) is None  # the noise reaches 0.1 everywhere
