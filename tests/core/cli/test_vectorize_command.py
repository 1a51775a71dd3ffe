"""Tests of ``kdmsi vectorize``'s summary: the changed area in words a reader can use."""

from __future__ import annotations

import numpy as np

from core.cli.vectorize import area_in_words


def test_area_in_words_uses_pixels_share_and_hectares_in_metres(tmp_path, write_raster):
    raster = write_raster(  # 100 x 50 pixels of 10 m
        tmp_path / "utm.tif", np.zeros((50, 100), np.float32), (500000, 10, 0, 4000000, 0, -10)
    )
    assert area_in_words(raster, 250 * 100.0) == "250 pixels (5 % of the raster, 2.5 ha)"


def test_area_in_words_leaves_square_degrees_out(tmp_path, write_raster):
    raster = write_raster(
        tmp_path / "geo.tif",
        np.zeros((40, 40), np.float32),
        (72.8, 0.0001, 0, 19.1, 0, -0.0001),
        crs="EPSG:4326",
    )
    assert area_in_words(raster, 16 * 1e-8) == "16 pixels (1 % of the raster)"
