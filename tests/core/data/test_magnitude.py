"""Tests of the change magnitude of a pair and its Otsu threshold."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.magnitude import (
    magnitude,
    pair_cue,
    pair_standardisation,
    pair_threshold,
    tile_magnitude,
)
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


def one_band_pair(tmp_path, write_raster, scene):
    """A one-band pair whose second date has another gain and offset, and a changed square."""
    before = scene(1100, 40, 1, seed=5)
    after = (before.astype(np.float64) * 0.6 + 70).astype(np.uint8)
    square = after[:, 10:30, 500:600]
    after[:, 10:30, 500:600] = np.where(square < 128, 255, 0)  # every pixel far from before
    return write_raster(tmp_path / "a1.tif", before), write_raster(tmp_path / "b1.tif", after)


def test_standardisation_is_each_dates_mean_and_spread_over_the_pair(tmp_path, write_raster, scene):
    with RasterPair.open(*one_band_pair(tmp_path, write_raster, scene)) as pair:
        stretch = compute_stretch(pair)
        standard = pair_standardisation(pair, stretch)
        data = pair.read(Window(0, 0, 1100, 40))
    a, b = stretch.before.apply(data.before)[0], stretch.after.apply(data.after)[0]
    assert standard.before_mean == pytest.approx(a.mean(), abs=1e-5)
    assert standard.before_std == pytest.approx(a.std(), abs=1e-5)
    assert (standard.after_mean, standard.after_std) == pytest.approx((b.mean(), b.std()), abs=1e-5)
    za, zb = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    mag = magnitude(data.before, data.after, stretch, standard)
    np.testing.assert_allclose(mag, np.abs(zb - za), atol=1e-4)


def test_pair_cue_standardises_one_band_pairs_only(tmp_path, write_raster, scene):
    with RasterPair.open(*one_band_pair(tmp_path, write_raster, scene)) as pair:
        stretch = compute_stretch(pair)
        cue = pair_cue(pair, stretch)
        data = pair.read(Window(0, 0, 1100, 40))
        assert cue.threshold == pair_threshold(pair, stretch)
    mag = magnitude(data.before, data.after, stretch, cue.standard)
    changed = np.zeros_like(mag, dtype=bool)
    changed[10:30, 500:600] = True
    assert mag[~changed].max() < cue.standard_threshold < mag[changed].min()
    before = write_raster(tmp_path / "a3.tif", scene(64, 64, 3, seed=1))
    after = write_raster(tmp_path / "b3.tif", scene(64, 64, 3, seed=2))
    with RasterPair.open(before, after) as pair:
        three = pair_cue(pair, compute_stretch(pair))
    assert three.standard is None and three.standard_threshold == 0.0 and three.threshold > 0


def test_tile_magnitude_standardises_each_tile_by_its_own_pair():
    before = np.full((2, 1, 4, 4), 51, dtype=np.uint8)  # 0.2 once stretched
    after = np.full((2, 1, 4, 4), 102, dtype=np.uint8)  # 0.4
    standard = np.array([[0.2, 0.1, 0.4, 0.2], [0.0, 0.1, 0.0, 0.2]], dtype=np.float32)
    mag = tile_magnitude(before, after, standard)
    np.testing.assert_allclose(mag[0], 0.0, atol=1e-6)  # both dates at their pair's mean
    np.testing.assert_allclose(mag[1], abs(0.4 / 0.2 - 0.2 / 0.1), atol=1e-5)
    np.testing.assert_allclose(tile_magnitude(before, after)[0], 0.2, atol=1e-6)
