"""Tests of core.io.geotiff and core.io.overviews: tiled, compressed outputs on A's grid with
internal overviews, written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr

from core.errors import KdmsiError
from core.io import geotiff
from core.io.geotiff import GeoTiffWriter, check_output
from core.io.grid import Grid
from core.io.overviews import build_overviews, overview_levels, resampling_for
from core.io.windows import Window

gdal.UseExceptions()


def utm_grid(width: int = 300, height: int = 200) -> Grid:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return Grid(width, height, (500_000.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0), srs.ExportToWkt())


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_output_has_the_grid_crs_and_is_tiled_and_compressed(tmp_path):
    grid = utm_grid()
    path = tmp_path / "out.tif"
    with GeoTiffWriter(path, grid, np.float32, nodata=-1) as out:
        out.write(Window(0, 0, grid.width, grid.height), np.zeros((grid.height, grid.width)))
    ds = gdal.Open(str(path))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (300, 200, 1)
    assert ds.GetGeoTransform() == grid.geotransform
    written = osr.SpatialReference(wkt=ds.GetProjection())
    assert written.IsSame(osr.SpatialReference(wkt=grid.crs_wkt))
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    band = ds.GetRasterBand(1)
    assert band.GetBlockSize() == [256, 256]  # tiled (a striped file has 300-pixel-wide blocks)
    assert band.DataType == gdal.GDT_Float32
    assert band.GetNoDataValue() == -1
    assert leftovers(tmp_path) == ["out.tif"]


def test_window_writes_land_in_place(tmp_path):
    grid = utm_grid(40, 30)
    path = tmp_path / "out.tif"
    first = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    with GeoTiffWriter(path, grid, np.uint8, bands=2, nodata=255) as out:
        out.write(Window(0, 0, 40, 30), np.zeros((30, 40)))
        out.write(Window(0, 0, 40, 30), np.zeros((30, 40)), band=2)
        out.write(Window(3, 10, 7, 5), first)
        out.write(Window(33, 25, 7, 5), np.full((5, 7), 9), band=2)
        out.set_description(1, "first band")
        out.set_metadata({"kdmsi_threshold": 0.5})
    ds = gdal.Open(str(path))
    one, two = ds.GetRasterBand(1).ReadAsArray(), ds.GetRasterBand(2).ReadAsArray()
    assert one.dtype == np.uint8
    np.testing.assert_array_equal(one[10:15, 3:10], first.astype(np.uint8))
    assert one.sum() == first.sum()
    assert (two[25:, 33:] == 9).all()
    assert two.sum() == 9 * 35
    assert ds.GetRasterBand(1).GetDescription() == "first band"
    assert ds.GetMetadataItem("kdmsi_threshold") == "0.5"
    assert ds.GetRasterBand(2).GetNoDataValue() == 255


def test_the_final_name_appears_only_when_complete(tmp_path):
    path = tmp_path / "out.tif"
    with GeoTiffWriter(path, utm_grid(16, 16)) as out:
        assert not path.exists()
        assert out.partial.exists()
        out.write(Window(0, 0, 16, 16), np.ones((16, 16)))
    assert path.exists()
    assert not out.partial.exists()


def test_an_error_inside_the_block_leaves_no_file(tmp_path):
    path = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="boom"), GeoTiffWriter(path, utm_grid(16, 16)) as out:
        out.write(Window(0, 0, 8, 8), np.ones((8, 8)))
        raise RuntimeError("boom")
    assert leftovers(tmp_path) == []


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "out.tif"
    path.write_bytes(b"keep me")
    with pytest.raises(KdmsiError, match="--overwrite") as info:
        GeoTiffWriter(path, utm_grid(8, 8))
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"keep me"
    assert leftovers(tmp_path) == ["out.tif"]
    with GeoTiffWriter(path, utm_grid(8, 8), np.uint8, overwrite=True) as out:
        out.write(Window(0, 0, 8, 8), np.full((8, 8), 3))
    assert gdal.Open(str(path)).ReadAsArray().sum() == 3 * 64
    assert leftovers(tmp_path) == ["out.tif"]


def test_a_failed_overwrite_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.tif"
    path.write_bytes(b"keep me")
    with pytest.raises(ValueError), GeoTiffWriter(path, utm_grid(8, 8), overwrite=True):
        raise ValueError
    assert path.read_bytes() == b"keep me"


def test_ungeoreferenced_grid_writes_no_georeferencing(tmp_path):
    path = tmp_path / "plain.tif"
    with GeoTiffWriter(path, Grid(20, 10), np.uint8) as out:
        out.write(Window(0, 0, 20, 10), np.ones((10, 20)))
    ds = gdal.Open(str(path))
    assert ds.GetProjection() == ""
    assert ds.GetGeoTransform(can_return_null=True) is None


def test_check_output_refuses_a_missing_folder(tmp_path):
    path = tmp_path / "no" / "such" / "out.tif"
    with pytest.raises(KdmsiError, match="does not exist") as info:
        check_output(path, overwrite=False)
    assert str(path.parent) in str(info.value)


def overview_sizes(path) -> list[tuple[int, int]]:
    ds = gdal.Open(str(path))  # kept: a band outliving its dataset crashes GDAL
    band = ds.GetRasterBand(1)
    return [(band.GetOverview(i).XSize, band.GetOverview(i).YSize)
            for i in range(band.GetOverviewCount())]  # fmt: skip


def overview_array(path, level: int) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(1).GetOverview(level).ReadAsArray()


def write_in_two_windows(path, array: np.ndarray, **kwargs) -> None:
    rows, cols = array.shape
    half = rows // 2
    with GeoTiffWriter(path, utm_grid(cols, rows), array.dtype, **kwargs) as out:
        out.write(Window(0, 0, cols, half), array[:half])
        out.write(Window(0, half, cols, rows - half), array[half:])


def test_overview_levels_halve_until_the_smaller_side_is_256_px():
    assert overview_levels(600, 520) == [2, 4]  # 520 -> 260 -> 130
    assert overview_levels(16000, 16000) == [2, 4, 8, 16, 32, 64]  # 16000 -> ... -> 250
    assert overview_levels(257, 10_000) == [2]
    assert overview_levels(256, 10_000) == overview_levels(200, 200) == []
    assert resampling_for(np.float32) == "AVERAGE"
    assert resampling_for(np.uint8) == "NEAREST"


def test_float_output_has_internal_averaged_overviews_without_nodata(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.random((520, 600)).astype(np.float32)
    array[10, 20] = -1  # one nodata pixel in the 2 x 2 block under overview pixel (5, 10)
    array[40:42, 60:62] = -1  # a whole block of nodata
    path = tmp_path / "prob.tif"
    write_in_two_windows(path, array, nodata=-1)
    assert leftovers(tmp_path) == ["prob.tif"]  # internal: no prob.tif.ovr beside it
    assert overview_sizes(path) == [(300, 260), (150, 130)]
    half = overview_array(path, 0)
    assert half[5, 10] == pytest.approx((array[10, 21] + array[11, 20] + array[11, 21]) / 3)
    assert half[20, 30] == -1
    assert half[100, 200] == pytest.approx(array[200:202, 400:402].mean())
    assert overview_array(path, 1)[50, 100] == pytest.approx(array[200:204, 400:404].mean())
    assert gdal.Open(str(path)).GetRasterBand(1).ReadAsArray().tolist() == array.tolist()
    first = gdal.Open(f"GTIFF_DIR:2:{path}")  # the first overview's TIFF directory
    assert first.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert gdal.GetConfigOption("COMPRESS_OVERVIEW") is None  # GDAL's settings left as they were


def test_mask_overviews_keep_only_zero_and_one(tmp_path, scene):
    mask = (scene(600, 520, bands=1)[0] > 128).astype(np.uint8)
    path = tmp_path / "mask.tif"
    write_in_two_windows(path, mask, nodata=255)
    assert overview_sizes(path) == [(300, 260), (150, 130)]
    for level in range(2):
        assert set(np.unique(overview_array(path, level))) == {0, 1}


def test_small_rasters_and_overviews_false_get_none(tmp_path, read_array):
    small = tmp_path / "small.tif"
    write_in_two_windows(small, np.ones((200, 200), np.float32))
    assert overview_sizes(small) == []
    large = tmp_path / "throwaway.tif"
    write_in_two_windows(large, np.ones((520, 600), np.float32), overviews=False)
    assert overview_sizes(large) == []
    assert read_array(large).shape == (520, 600)
    assert leftovers(tmp_path) == ["small.tif", "throwaway.tif"]


def test_failed_overviews_leave_no_file_and_name_the_output(tmp_path, monkeypatch):
    def fail(dataset, dtype):
        raise RuntimeError("no space left on device")

    monkeypatch.setattr(geotiff, "build_overviews", fail)
    path = tmp_path / "prob.tif"
    with pytest.raises(KdmsiError, match="overviews") as info:
        write_in_two_windows(path, np.ones((520, 600), np.float32))
    assert str(path) in str(info.value) and "no space left" in str(info.value)
    assert leftovers(tmp_path) == []


def test_overview_options_are_set_for_the_build_only(tmp_path, monkeypatch):
    seen = {}

    def build(dataset, resampling, levels):
        seen["compress"] = gdal.GetConfigOption("COMPRESS_OVERVIEW")
        raise RuntimeError("stop")

    gdal.SetThreadLocalConfigOption("COMPRESS_OVERVIEW", "LZW")
    try:
        dataset = gdal.GetDriverByName("MEM").Create("", 600, 520)
        monkeypatch.setattr(gdal.Dataset, "BuildOverviews", build)
        with pytest.raises(RuntimeError, match="stop"):
            build_overviews(dataset, np.float32)
        assert seen["compress"] == "DEFLATE"
        assert gdal.GetConfigOption("COMPRESS_OVERVIEW") == "LZW"
    finally:
        gdal.SetThreadLocalConfigOption("COMPRESS_OVERVIEW", None)
