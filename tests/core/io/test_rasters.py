"""Tests of core.io.rasters: opening a pair, aligning B onto A's grid, reading windows, errors."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.io.grid import Grid
from core.io.rasters import RasterPair, grid_of, open_raster, same_crs, same_grid
from core.io.windows import Window

gdal.UseExceptions()


def recorder() -> tuple[Callbacks, list[tuple[str, str]]]:
    logs: list[tuple[str, str]] = []
    return Callbacks(log=lambda level, message: logs.append((level, message))), logs


def full(pair: RasterPair) -> Window:
    return Window(0, 0, pair.grid.width, pair.grid.height)


# --- pairs on the same grid ----------------------------------------------------------------


def test_same_grid_pair_is_not_aligned_and_reads_the_raw_values(tmp_path, write_raster, scene):
    a, b = scene(60, 40, 3, seed=1), scene(60, 40, 3, seed=2)
    path_a, path_b = write_raster(tmp_path / "a.tif", a), write_raster(tmp_path / "b.tif", b)
    callbacks, logs = recorder()
    with RasterPair.open(path_a, path_b, callbacks=callbacks) as pair:
        assert not pair.aligned
        assert pair.bands == (1, 2, 3)
        assert pair.band_count == 3
        assert pair.data_types == ("Byte", "Byte")
        assert (pair.grid.width, pair.grid.height) == (60, 40)
        data = pair.read(Window(10, 5, 20, 30))
    assert data.before.dtype == np.float32 and data.after.dtype == np.float32
    assert data.before.shape == (3, 30, 20)
    np.testing.assert_array_equal(data.before, a[:, 5:35, 10:30])
    np.testing.assert_array_equal(data.after, b[:, 5:35, 10:30])
    assert data.valid.all()
    assert logs == []


def test_chosen_bands_are_read_in_the_given_order(tmp_path, write_raster, scene):
    a = scene(30, 20, 4, seed=3)
    path_a = write_raster(tmp_path / "a.tif", a)
    path_b = write_raster(tmp_path / "b.tif", a)
    with RasterPair.open(path_a, path_b, bands=(4, 1)) as pair:
        data = pair.read(full(pair))
    np.testing.assert_array_equal(data.before, a[[3, 0]])


def test_read_with_out_size_decimates(tmp_path, write_raster, scene):
    a = scene(64, 32, 1)
    path = write_raster(tmp_path / "a.tif", a)
    with RasterPair.open(path, path) as pair:
        data = pair.read(full(pair), out_size=(16, 8))
    assert data.before.shape == (1, 8, 16)
    assert data.valid.shape == (8, 16)


def test_one_band_rasters_pair_with_default_bands(tmp_path, write_raster, scene):
    path_a = write_raster(tmp_path / "a.tif", scene(20, 10, 1))
    path_b = write_raster(tmp_path / "b.tif", scene(20, 10, 1, seed=5))
    with RasterPair.open(path_a, path_b) as pair:
        assert pair.bands == (1,)
        assert pair.read(full(pair)).before.shape == (1, 10, 20)


def test_default_bands_follow_the_date_with_fewer_bands(tmp_path, write_raster, scene):
    path_a = write_raster(tmp_path / "a.tif", scene(20, 10, 4))
    path_b = write_raster(tmp_path / "b.tif", scene(20, 10, 2))
    with RasterPair.open(path_a, path_b) as pair:
        assert pair.bands == (1, 2)


@pytest.mark.parametrize("bad", ["a", "b"])
def test_band_beyond_the_count_names_the_file(tmp_path, write_raster, scene, bad):
    path_a = write_raster(tmp_path / "a.tif", scene(20, 10, 3 if bad == "b" else 2))
    path_b = write_raster(tmp_path / "b.tif", scene(20, 10, 3 if bad == "a" else 2))
    with pytest.raises(KdmsiError) as info:
        RasterPair.open(path_a, path_b, bands=(3, 2, 1))
    assert str(tmp_path / f"{bad}.tif") in str(info.value)
    assert "2 band(s)" in str(info.value)


def test_nodata_value_makes_pixels_invalid(tmp_path, write_raster):
    a = np.full((2, 20, 30), 50, dtype=np.uint16)
    a[:, 3:6, 4:9] = 0
    b = np.full((2, 20, 30), 70, dtype=np.uint16)
    b[:, 15, :] = 9999
    path_a = write_raster(tmp_path / "a.tif", a, nodata=0)
    path_b = write_raster(tmp_path / "b.tif", b, nodata=9999)
    with RasterPair.open(path_a, path_b) as pair:
        valid = pair.read(full(pair)).valid
    expected = np.ones((20, 30), dtype=bool)
    expected[3:6, 4:9] = False
    expected[15, :] = False
    np.testing.assert_array_equal(valid, expected)


def test_nan_pixels_are_invalid(tmp_path, write_raster):
    a = np.ones((1, 8, 8), dtype=np.float32)
    a[0, 2, 2] = np.nan
    path = write_raster(tmp_path / "a.tif", a)
    with RasterPair.open(path, path) as pair:
        valid = pair.read(full(pair)).valid
    assert not valid[2, 2]
    assert valid.sum() == 63


# --- alignment -----------------------------------------------------------------------------


def test_real_pair_on_different_grids_is_warped_onto_a(hongkong):
    before, after, _ = hongkong
    callbacks, logs = recorder()
    with RasterPair.open(before, after, callbacks=callbacks) as pair:
        assert pair.aligned
        ds_a = gdal.Open(str(before))
        assert pair.grid == grid_of(ds_a)
        assert (pair.grid.width, pair.grid.height) == (540, 695)
        data = pair.read(full(pair))
    assert data.before.shape == data.after.shape == (3, 695, 540)
    assert data.valid.mean() > 0.95
    assert any(
        level == "info" and "warping" in message and after.name in message
        for level, message in logs
    )
    # The warped B lies on A's pixels: the dates correlate, and better than with a 3 pixel shift.
    for band in range(3):
        a, b = data.before[band], data.after[band]
        inner = (slice(5, -5), slice(5, -5))
        aligned = np.corrcoef(a[inner].ravel(), b[inner].ravel())[0, 1]
        shifted = np.corrcoef(a[5:-5, 5:-5].ravel(), b[5:-5, 8:-2].ravel())[0, 1]
        assert aligned > 0.6
        assert aligned > shifted + 0.1


def test_pair_in_different_crs_is_warped_and_keeps_values(tmp_path, write_raster, scene):
    original = scene(120, 100, 3, seed=7)
    path_a = write_raster(tmp_path / "utm.tif", original)
    path_b = tmp_path / "wgs84.tif"
    gdal.Warp(str(path_b), str(path_a), dstSRS="EPSG:4326", resampleAlg="bilinear")
    assert not same_crs(
        gdal.Open(str(path_a)).GetProjection(), gdal.Open(str(path_b)).GetProjection()
    )
    with RasterPair.open(path_a, path_b) as pair:
        assert pair.aligned
        assert pair.grid.geotransform == gdal.Open(str(path_a)).GetGeoTransform()
        data = pair.read(full(pair))
    inner = (slice(None), slice(5, -5), slice(5, -5))
    assert data.valid[5:-5, 5:-5].all()
    diff = np.abs(data.after - data.before)[inner]
    assert diff.mean() < 2.0  # two bilinear resamplings of a smooth 0..255 image
    assert diff.max() <= 10.0


def test_pixels_outside_b_are_invalid(tmp_path, write_raster, scene):
    image = scene(100, 40, 1, seed=4)
    path_a = write_raster(tmp_path / "a.tif", image)
    # B is A's right half, on its own (shifted) grid
    shifted = (500_000.0 + 50 * 10.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0)
    path_b = write_raster(tmp_path / "b.tif", image[:, :, 50:], geotransform=shifted)
    with RasterPair.open(path_a, path_b) as pair:
        assert pair.aligned
        data = pair.read(full(pair))
    assert not data.valid[:, :49].any()
    assert data.valid[:, 51:].all()
    np.testing.assert_allclose(data.after[:, :, 51:], data.before[:, :, 51:], atol=1.0)


def test_pair_without_overlap_names_both_files(tmp_path, write_raster, scene):
    path_a = write_raster(tmp_path / "here.tif", scene(20, 20, 1))
    far = (900_000.0, 10.0, 0.0, 5_600_000.0, 0.0, -10.0)
    path_b = write_raster(tmp_path / "there.tif", scene(20, 20, 1), geotransform=far)
    with pytest.raises(KdmsiError, match="do not overlap") as info:
        RasterPair.open(path_a, path_b)
    assert str(path_a) in str(info.value) and str(path_b) in str(info.value)


def test_geotransform_without_crs_is_refused(tmp_path, write_raster, scene):
    path_a = write_raster(tmp_path / "a.tif", scene(20, 20, 1))
    moved = (500_005.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0)
    path_b = write_raster(tmp_path / "b.tif", scene(20, 20, 1), geotransform=moved, crs=None)
    with pytest.raises(KdmsiError, match="no CRS") as info:
        RasterPair.open(path_a, path_b)
    assert str(path_b) in str(info.value)


def test_ungeoreferenced_png_pair(levir_full):
    before, after, _ = levir_full
    with RasterPair.open(before, after) as pair:
        assert not pair.aligned
        assert not pair.grid.georeferenced
        assert (pair.grid.width, pair.grid.height) == (1024, 1024)
        assert pair.band_count == 3
        data = pair.read(Window(1000, 1000, 24, 24))
    assert data.before.shape == (3, 24, 24)
    assert data.valid.all()
    assert data.before.max() > 0


def test_ungeoreferenced_images_of_different_sizes_are_refused(tmp_path, write_raster, scene):
    path_a = write_raster(tmp_path / "a.tif", scene(30, 20, 1), geotransform=None, crs=None)
    path_b = write_raster(tmp_path / "b.tif", scene(31, 20, 1), geotransform=None, crs=None)
    with pytest.raises(KdmsiError, match="30x20") as info:
        RasterPair.open(path_a, path_b)
    assert str(path_a) in str(info.value) and str(path_b) in str(info.value)


def test_one_georeferenced_date_pairs_pixel_by_pixel_with_a_warning(tmp_path, write_raster, scene):
    path_a = write_raster(tmp_path / "a.tif", scene(30, 20, 1))
    path_b = write_raster(tmp_path / "b.tif", scene(30, 20, 1), geotransform=None, crs=None)
    callbacks, logs = recorder()
    with RasterPair.open(path_a, path_b, callbacks=callbacks) as pair:
        assert not pair.aligned
    assert [level for level, _ in logs] == ["warning"]


# --- files that are not rasters ------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "nothing.tif"


def _text(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is not a raster\n")
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.tif"
    path.touch()
    return path


def _folder(tmp_path):
    path = tmp_path / "folder.tif"
    path.mkdir()
    return path


@pytest.mark.parametrize("make", [_missing, _text, _empty, _folder])
def test_unreadable_inputs_raise_a_user_error_naming_the_path(tmp_path, write_raster, scene, make):
    bad = make(tmp_path)
    with pytest.raises(KdmsiError) as info:
        open_raster(bad, "before raster")
    assert str(bad) in str(info.value)
    good = write_raster(tmp_path / "good.tif", scene(8, 8, 1))
    for before, after in ((bad, good), (good, bad)):
        with pytest.raises(KdmsiError) as info:
            RasterPair.open(before, after)
        assert str(bad) in str(info.value)


def test_same_grid_tolerates_rounding_but_not_shifts():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    utm, other = srs.ExportToWkt(), srs.ExportToPrettyWkt()
    srs.ImportFromEPSG(4326)
    wgs84 = srs.ExportToWkt()
    gt = (500_000.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0)
    a = Grid(10, 10, gt, utm)
    assert same_grid(a, Grid(10, 10, (500_000.0 + 1e-9, *gt[1:]), other))
    assert not same_grid(a, Grid(10, 10, (500_001.0, *gt[1:]), utm))
    assert not same_grid(a, Grid(11, 10, gt, utm))
    assert not same_grid(a, Grid(10, 10, gt, wgs84))
    assert same_crs("", "")
    assert not same_crs("", utm)
