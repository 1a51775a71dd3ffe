"""Tests of core.io.geotiff: tiled, compressed outputs on A's grid, written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr

from core.errors import KdmsiError
from core.io.geotiff import GeoTiffWriter, check_output
from core.io.grid import Grid
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
