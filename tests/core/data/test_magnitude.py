"""Tests of the change magnitude of a pair and its Otsu threshold."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.magnitude import magnitude, pair_threshold, tile_magnitude
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.io.windows import Window


def test_tile_magnitude():
    before = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    after = before.copy()
    after[0, :, 1, 2] = 255
    after[1, 0] = 51
    mag = tile_magnitude(before, after)
    assert mag.shape == (2, 4, 4)
    assert mag[0, 1, 2] == pytest.approx(np.sqrt(3))
    assert mag[0].sum() == pytest.approx(np.sqrt(3))
    assert np.allclose(mag[1], 0.2)


def test_pair_threshold_separates_the_changed_square(tmp_path, write_raster, scene):
    before = scene(1100, 40, 3, seed=2)  # wider than one block, so two windows are counted
    after = before.copy()
    square = after[:, 10:30, 500:600]
    after[:, 10:30, 500:600] = np.where(square < 128, 255, 0)  # every pixel far from before
    path_a, path_b = (
        write_raster(tmp_path / "a.tif", before),
        write_raster(tmp_path / "b.tif", after),
    )
    with RasterPair.open(path_a, path_b) as pair:
        stretch = compute_stretch(pair)
        threshold = pair_threshold(pair, stretch)
        data = pair.read(Window(0, 0, 1100, 40))
    mag = magnitude(data.before, data.after, stretch)
    changed = np.zeros_like(mag, dtype=bool)
    changed[10:30, 500:600] = True
    assert mag[~changed].max() < threshold < mag[changed].min()
