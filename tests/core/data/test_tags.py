"""Tests of core.data.tags: the GeoPackage tag layer and tile tags derived from a pixel mask."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from core.data.tags import FIELDS, LAYER, read_tags, tags_from_mask, write_tags
from core.data.tiles import TileSpec
from core.errors import KdmsiError
from core.io.grid import Grid
from core.io.rasters import grid_of

gdal.UseExceptions()
ogr.UseExceptions()


@pytest.fixture
def utm_raster(tmp_path, write_raster, scene):
    return write_raster(tmp_path / "a.tif", scene(100, 60, 1))


def test_write_read_round_trip(tmp_path, utm_raster):
    grid = grid_of(gdal.Open(str(utm_raster)))
    tiles = TileSpec(grid.width, grid.height, 32).tiles()
    assert len(tiles) == 6  # 3 columns (the 4 px sliver is dropped) x 2 rows (28 px edge kept)
    labels = {0: 1, 1: 0, 4: 1, 5: None}
    meta = {"before": "/x/a.tif", "after": "/x/b.tif", "tile": 32, "stride": 32}
    path = tmp_path / "tags.gpkg"
    write_tags(path, grid, tiles, labels, meta)
    layer = read_tags(path)
    assert [t.tile for t in layer.tiles] == tiles
    assert [t.label for t in layer.tiles] == [1, 0, None, None, 1, None]
    assert layer.counts == {"changed": 2, "unchanged": 1, "untagged": 3}
    assert [t.tile.tile_id for t in layer.tagged] == [0, 1, 4]
    assert layer.meta == {"before": "/x/a.tif", "after": "/x/b.tif", "tile": "32", "stride": "32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "tags.gpkg"]


def test_layer_crs_and_polygons_follow_the_raster(tmp_path, utm_raster):
    ds = gdal.Open(str(utm_raster))
    grid = grid_of(ds)
    tiles = TileSpec(grid.width, grid.height, 32).tiles()
    path = tmp_path / "tags.gpkg"
    write_tags(path, grid, tiles, {}, {})
    vector = ogr.Open(str(path))
    layer = vector.GetLayerByName(LAYER)
    assert layer.GetSpatialRef().IsSame(osr.SpatialReference(wkt=ds.GetProjection()))
    assert layer.GetFeatureCount() == len(tiles)
    assert [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(len(FIELDS))] == list(
        FIELDS
    )
    feature = layer.GetFeature(1)
    minx, maxx, miny, maxy = feature.GetGeometryRef().GetEnvelope()
    tile = tiles[feature.GetField("tile_id")]
    x0, y0 = grid.to_map(tile.window.col, tile.window.row_end)
    x1, y1 = grid.to_map(tile.window.col_end, tile.window.row)
    assert (minx, miny, maxx, maxy) == pytest.approx((x0, y0, x1, y1))
    assert feature.GetGeometryRef().GetArea() == pytest.approx(
        tile.window.width * tile.window.height * grid.pixel_area
    )
    assert not feature.IsFieldSetAndNotNull("label")


def test_ungeoreferenced_grid_gives_a_cartesian_layer_with_flipped_y(tmp_path):
    grid = Grid(64, 64)
    tiles = TileSpec(64, 64, 32).tiles()
    path = tmp_path / "tags.gpkg"
    write_tags(path, grid, tiles, {3: 1}, {})
    # pixel coordinates are not degrees: the GeoPackage's undefined Cartesian SRS (-1), not
    # its undefined geographic SRS (0)
    with closing(sqlite3.connect(path)) as db:
        srs_id = db.execute(
            "SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = ?", (LAYER,)
        ).fetchone()[0]
    assert srs_id == -1
    vector = ogr.Open(str(path))  # keep the dataset alive while its layer is used
    layer = vector.GetLayerByName(LAYER)
    assert not layer.GetSpatialRef().IsGeographic()
    minx, maxx, miny, maxy = layer.GetExtent()
    assert (minx, maxx, miny, maxy) == (0.0, 64.0, -64.0, 0.0)
    assert read_tags(path).counts == {"changed": 1, "unchanged": 0, "untagged": 3}


def test_write_refuses_other_formats_and_existing_files(tmp_path, utm_raster):
    grid = grid_of(gdal.Open(str(utm_raster)))
    tiles = TileSpec(grid.width, grid.height, 32).tiles()
    with pytest.raises(KdmsiError, match=r"\.gpkg") as info:
        write_tags(tmp_path / "tags.shp", grid, tiles, {}, {})
    assert str(tmp_path / "tags.shp") in str(info.value)
    path = tmp_path / "tags.gpkg"
    write_tags(path, grid, tiles, {0: 1}, {})
    with pytest.raises(KdmsiError, match="already exists"):
        write_tags(path, grid, tiles, {0: 0}, {})
    assert read_tags(path).tiles[0].label == 1
    write_tags(path, grid, tiles, {0: 0}, {}, overwrite=True)
    assert read_tags(path).tiles[0].label == 0


def test_tags_from_mask_marks_a_tile_changed_if_any_pixel_is(tmp_path, write_raster):
    mask = np.zeros((64, 96), dtype=np.uint8)
    mask[31, 63] = 255  # the last pixel of tile (0, 1)
    mask[40:50, 70:90] = 1  # inside tile (1, 2)
    mask[0, 0] = 200  # nodata: ignored
    path = write_raster(tmp_path / "label.tif", mask, nodata=200)
    grid = Grid(96, 64)
    tiles = TileSpec(96, 64, 32).tiles()
    tags = tags_from_mask(path, tiles, grid)
    assert tags == {0: 0, 1: 1, 2: 0, 3: 0, 4: 0, 5: 1}


def test_tags_from_mask_refuses_a_mask_of_another_size(tmp_path, write_raster):
    path = write_raster(tmp_path / "label.tif", np.zeros((64, 95), dtype=np.uint8))
    with pytest.raises(KdmsiError, match="95x64") as info:
        tags_from_mask(path, TileSpec(96, 64, 32).tiles(), Grid(96, 64))
    assert str(path) in str(info.value)


def test_read_refuses_a_missing_file(tmp_path):
    path = tmp_path / "none.gpkg"
    with pytest.raises(KdmsiError, match="does not exist") as info:
        read_tags(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not a geopackage at all\n"])
def test_read_refuses_a_file_that_is_not_a_geopackage(tmp_path, content):
    path = tmp_path / "tags.gpkg"
    path.write_bytes(content)
    with pytest.raises(KdmsiError) as info:
        read_tags(path)
    assert str(path) in str(info.value)


def test_read_refuses_a_raster(tmp_path, utm_raster):
    with pytest.raises(KdmsiError) as info:
        read_tags(utm_raster)
    assert str(utm_raster) in str(info.value)


def test_read_refuses_a_geopackage_without_the_tag_layer_or_fields(tmp_path):
    other = tmp_path / "other.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(other))
    ds.CreateLayer("roads", None, ogr.wkbLineString)
    ds = None
    with pytest.raises(KdmsiError, match="'tiles'"):
        read_tags(other)
    partial = tmp_path / "partial.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(partial))
    layer = ds.CreateLayer(LAYER, None, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("tile_id", ogr.OFTInteger))
    ds = None
    with pytest.raises(KdmsiError, match="'row'"):
        read_tags(partial)
