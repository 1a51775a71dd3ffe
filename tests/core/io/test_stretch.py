"""Tests of core.io.stretch: the per-band percentile stretch of each date."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch, Stretch, band_percentiles, compute_stretch
from core.io.windows import Window


def ramp(rows: int, cols: int, top: float, dtype: type) -> np.ndarray:
    """Values evenly spread from 0 to ``top``, row-major."""
    return np.linspace(0, top, rows * cols).reshape(rows, cols).astype(dtype)


def test_band_percentiles_of_a_known_ramp():
    data = np.arange(101, dtype=np.float32).reshape(1, 1, 101)
    stretch = band_percentiles(data, np.ones((1, 101), dtype=bool), 2.0, 98.0)
    assert stretch.low == pytest.approx((2.0,))
    assert stretch.high == pytest.approx((98.0,))


def test_band_percentiles_use_only_valid_pixels():
    data = np.array([[[0.0, 10.0, 20.0, 1000.0]]], dtype=np.float32)
    valid = np.array([[True, True, True, False]])
    stretch = band_percentiles(data, valid, 0.0, 100.0)
    assert stretch.low == (0.0,)
    assert stretch.high == (20.0,)


def test_band_percentiles_of_a_constant_band_keep_a_positive_span():
    data = np.full((2, 4, 4), 7.0, dtype=np.float32)
    stretch = band_percentiles(data, np.ones((4, 4), dtype=bool), 2.0, 98.0)
    assert stretch.low == (7.0, 7.0)
    assert stretch.high == (8.0, 8.0)


@pytest.mark.parametrize("top", [1, 255, 4095, 65535])
def test_band_percentiles_of_whole_numbers_equal_numpys_exactly(top):
    """8- and 16-bit bands are counted, not sorted: the stretch must not move by one bit."""
    rng = np.random.default_rng(top)
    for size in (1, 2, 3, 50, 999, 4096):
        data = rng.integers(0, top + 1, (2, 1, size)).astype(np.float32)
        valid = rng.random((1, size)) < 0.8
        valid[0, 0] = True
        for low_pct, high_pct in ((2.0, 98.0), (0.0, 100.0), (1.5, 99.7), (50.0, 50.0)):
            stretch = band_percentiles(data, valid, low_pct, high_pct)
            pixels = data[:, valid]
            low = np.percentile(pixels, low_pct, axis=1)
            high = np.percentile(pixels, high_pct, axis=1)
            high = np.where(high > low, high, low + 1.0)
            assert stretch.low == tuple(float(v) for v in low)
            assert stretch.high == tuple(float(v) for v in high)


def test_band_percentiles_of_fractions_and_negatives_are_numpys():
    """Bands that are not whole numbers in 0..65535 (radar decibels, reflectances) are sorted."""
    rng = np.random.default_rng(3)
    data = np.stack([rng.normal(-12.0, 4.0, (30, 30)), rng.random((30, 30))]).astype(np.float32)
    data[0, 0, 0] = np.nan
    valid = np.ones((30, 30), dtype=bool)
    valid[0, 0] = False
    stretch = band_percentiles(data, valid, 2.0, 98.0)
    pixels = data[:, valid]
    assert stretch.low == tuple(float(v) for v in np.percentile(pixels, 2.0, axis=1))
    assert stretch.high == tuple(float(v) for v in np.percentile(pixels, 98.0, axis=1))


def test_band_percentiles_without_valid_pixels_raise():
    with pytest.raises(ValueError, match="no valid pixels"):
        band_percentiles(np.zeros((1, 2, 2)), np.zeros((2, 2), dtype=bool), 2.0, 98.0)


def test_apply_maps_low_and_high_to_0_and_1_and_clips():
    stretch = Stretch(low=(10.0, 0.0), high=(20.0, 100.0))
    data = np.array([[[5.0, 10.0, 15.0, 20.0, 99.0]], [[0.0, 25.0, 50.0, 100.0, 200.0]]])
    out = stretch.apply(data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(out[1, 0], [0.0, 0.25, 0.5, 1.0, 1.0])


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, 255), (np.uint16, 60_000)])
def test_compute_stretch_maps_the_pair_to_unit_range(tmp_path, write_raster, dtype, top):
    before = np.stack([ramp(50, 40, top, dtype), ramp(50, 40, top // 2, dtype)])
    after = (before // 3).astype(dtype)
    path_a = write_raster(tmp_path / "a.tif", before)
    path_b = write_raster(tmp_path / "b.tif", after)
    with RasterPair.open(path_a, path_b, bands=(1, 2)) as pair:
        stretch = compute_stretch(pair)
        data = pair.read(Window(0, 0, 40, 50))
    for date, raw in ((stretch.before, before), (stretch.after, after)):
        expected_low = np.percentile(raw.reshape(2, -1), 2, axis=1)
        expected_high = np.percentile(raw.reshape(2, -1), 98, axis=1)
        np.testing.assert_allclose(date.low, expected_low, rtol=1e-6)
        np.testing.assert_allclose(date.high, expected_high, rtol=1e-6)
    for date, raw in ((stretch.before, data.before), (stretch.after, data.after)):
        out = date.apply(raw)
        assert out.min() == 0.0 and out.max() == 1.0
        # about 2 % of pixels at each end are clipped
        assert 0.01 < (out == 0).mean() < 0.04
        assert 0.01 < (out == 1).mean() < 0.04


def test_compute_stretch_ignores_nodata(tmp_path, write_raster):
    before = ramp(20, 20, 200, np.uint8) + 10
    before[:5] = 0
    path_a = write_raster(tmp_path / "a.tif", before, nodata=0)
    path_b = write_raster(tmp_path / "b.tif", ramp(20, 20, 200, np.uint8) + 10)
    with RasterPair.open(path_a, path_b) as pair:
        stretch = compute_stretch(pair, low_pct=0.0, high_pct=100.0)
    assert stretch.before.low[0] == float(before[5:].min())
    # B's pixels are taken where both dates are valid
    assert stretch.after.low[0] == float(before[5:].min())


def test_pair_stretch_round_trips_through_json():
    stretch = PairStretch(Stretch((1.0, 2.5), (100.0, 200.0)), Stretch((3.0, 4.0), (50.0, 60.5)))
    data = json.loads(json.dumps(stretch.to_dict()))
    assert PairStretch.from_dict(data) == stretch


def test_all_nodata_pair_is_a_user_error(tmp_path, write_raster):
    path_a = write_raster(tmp_path / "a.tif", np.zeros((10, 10), dtype=np.uint8), nodata=0)
    path_b = write_raster(tmp_path / "b.tif", np.ones((10, 10), dtype=np.uint8))
    with RasterPair.open(path_a, path_b) as pair, pytest.raises(KdmsiError) as info:
        compute_stretch(pair)
    assert str(path_a) in str(info.value) and str(path_b) in str(info.value)
