"""Tests of core.detect.cva: change vector analysis on a synthetic pair with a known square."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr

import core.data.magnitude
from core.callbacks import Callbacks
from core.data.magnitude import magnitude
from core.detect.cva import MASK_NODATA, NODATA, run_cva
from core.errors import Canceled, KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.io.windows import Window

gdal.UseExceptions()

SQUARE = (slice(40, 80), slice(60, 110))


@pytest.fixture
def changed_pair(tmp_path, write_raster, scene):
    """A 160x120 pair: B is A plus noise, except a 40x50 square that changed a lot."""
    before = scene(160, 120, 3, seed=11)
    rng = np.random.default_rng(1)
    after = np.clip(before + rng.normal(0, 3, before.shape), 0, 255)
    square = after[:, SQUARE[0], SQUARE[1]]
    after[:, SQUARE[0], SQUARE[1]] = np.where(square < 128, square + 100, square - 100)
    after = after.astype(np.uint8)
    before[:, :4, :4] = 0  # nodata corner of A
    path_a = write_raster(tmp_path / "a.tif", before, nodata=0)
    path_b = write_raster(tmp_path / "b.tif", after)
    return path_a, path_b


def expected_change() -> np.ndarray:
    truth = np.zeros((120, 160), dtype=bool)
    truth[SQUARE] = True
    return truth


def test_mask_marks_the_changed_square(tmp_path, changed_pair, read_array):
    with RasterPair.open(*changed_pair) as pair:
        result = run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
    mask = read_array(result.mask, 1)
    truth = expected_change()
    scored = mask != MASK_NODATA
    changed = (mask == 1) & scored
    tp = (changed & truth).sum()
    assert tp / truth.sum() > 0.95  # recall
    assert tp / changed.sum() > 0.95  # precision
    assert set(np.unique(mask)) <= {0, 1, MASK_NODATA}


def test_probability_is_magnitude_over_twice_the_otsu_threshold(tmp_path, changed_pair, read_array):
    with RasterPair.open(*changed_pair) as pair:
        result = run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
        stretch = compute_stretch(pair)
        data = pair.read(Window(0, 0, 160, 120))
    prob, mask = read_array(result.probability, 1), read_array(result.mask, 1)
    mag = magnitude(data.before, data.after, stretch)
    valid = data.valid
    np.testing.assert_allclose(
        prob[valid], np.clip(mag / (2 * result.threshold), 0, 1)[valid], atol=1e-6
    )
    # the Otsu threshold maps to 0.5: mask and probability >= 0.5 agree
    np.testing.assert_array_equal(mask[valid] == 1, prob[valid] >= 0.5)
    assert 0 < result.threshold < np.sqrt(3)
    assert prob[valid].min() >= 0.0 and prob[valid].max() <= 1.0
    ds = gdal.Open(str(result.probability))
    assert ds.GetMetadataItem("kdmsi_threshold") == "0.5"
    assert ds.GetMetadataItem("kdmsi_method") == "cva"


def test_nodata_pixels_get_the_nodata_values(tmp_path, changed_pair, read_array):
    with RasterPair.open(*changed_pair) as pair:
        result = run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
    prob, mask = read_array(result.probability, 1), read_array(result.mask, 1)
    assert (prob[:4, :4] == NODATA).all() and (mask[:4, :4] == MASK_NODATA).all()
    assert (prob == NODATA).sum() == 16 and (mask == MASK_NODATA).sum() == 16
    assert gdal.Open(str(result.probability)).GetRasterBand(1).GetNoDataValue() == NODATA
    assert gdal.Open(str(result.mask)).GetRasterBand(1).GetNoDataValue() == MASK_NODATA


def test_outputs_are_on_a_grid(tmp_path, changed_pair):
    path_a, _ = changed_pair
    with RasterPair.open(*changed_pair) as pair:
        result = run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
    a = gdal.Open(str(path_a))
    for output in (result.probability, result.mask):
        ds = gdal.Open(str(output))
        assert (ds.RasterXSize, ds.RasterYSize) == (a.RasterXSize, a.RasterYSize)
        assert ds.GetGeoTransform() == a.GetGeoTransform()
        assert osr.SpatialReference(wkt=ds.GetProjection()).IsSame(
            osr.SpatialReference(wkt=a.GetProjection())
        )


def test_real_pair_on_different_grids_is_written_on_a_grid(tmp_path, hongkong):
    before, after, _ = hongkong
    with RasterPair.open(before, after) as pair:
        result = run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
    a, out = gdal.Open(str(before)), gdal.Open(str(result.probability))
    assert (out.RasterXSize, out.RasterYSize) == (540, 695)
    assert out.GetGeoTransform() == a.GetGeoTransform()
    assert osr.SpatialReference(wkt=out.GetProjection()).IsSame(
        osr.SpatialReference(wkt=a.GetProjection())
    )


def test_progress_is_reported_and_reaches_one(tmp_path, changed_pair):
    fractions: list[float] = []
    callbacks = Callbacks(progress=lambda fraction, message: fractions.append(fraction))
    with RasterPair.open(*changed_pair) as pair:
        run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif", callbacks)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


def test_cancel_leaves_no_output(tmp_path, changed_pair):
    calls = iter(range(1000))
    callbacks = Callbacks(is_canceled=lambda: next(calls) >= 1)  # cancel during the second pass
    with RasterPair.open(*changed_pair) as pair, pytest.raises(Canceled):
        run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif", callbacks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]


def test_existing_outputs_are_refused_without_overwrite(tmp_path, changed_pair):
    (tmp_path / "mask.tif").write_bytes(b"old")
    with RasterPair.open(*changed_pair) as pair:
        with pytest.raises(KdmsiError, match="already exists"):
            run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "mask.tif"]
        run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif", overwrite=True)
    assert gdal.Open(str(tmp_path / "mask.tif")).RasterXSize == 160


def test_histogram_counts_every_valid_pixel_once(tmp_path, write_raster, scene, monkeypatch):
    # wider than one 1024-pixel block and not a multiple of it
    before = scene(1100, 4, 3, seed=2)
    after = before.copy()
    after[:, :, 500:600] = 255 - after[:, :, 500:600]
    path_a = write_raster(tmp_path / "a.tif", before)
    path_b = write_raster(tmp_path / "b.tif", after)
    totals: list[float] = []
    original = core.data.magnitude.otsu

    def spy(hist, edges):
        totals.append(float(np.sum(hist)))
        return original(hist, edges)

    monkeypatch.setattr(core.data.magnitude, "otsu", spy)
    with RasterPair.open(path_a, path_b) as pair:
        result = run_cva(pair, tmp_path / "prob.tif", tmp_path / "mask.tif")
    assert totals == [1100 * 4]
    assert gdal.Open(str(result.probability)).RasterXSize == 1100
