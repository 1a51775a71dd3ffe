"""Tests of the atomic tile-polygon GeoPackage writer."""

import pytest
from osgeo import ogr

from core.errors import KdmsiError
from core.io.gpkg import polygon_layer, window_polygon
from core.io.grid import Grid
from core.io.windows import Window

GRID = Grid(10, 10)


def test_a_failure_inside_leaves_no_file(tmp_path):
    out = tmp_path / "x.gpkg"
    with pytest.raises(RuntimeError, match="boom"):
        with polygon_layer(out, GRID, "tiles", [("a", ogr.OFTInteger)], "test layer") as layer:
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetGeometry(window_polygon(GRID, Window(0, 0, 2, 2)))
            layer.CreateFeature(feature)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_written_layer_reopens_with_pixel_coordinates_y_down(tmp_path):
    out = tmp_path / "x.gpkg"
    with polygon_layer(out, GRID, "tiles", [("a", ogr.OFTInteger)], "test layer") as layer:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("a", 7)
        feature.SetGeometry(window_polygon(GRID, Window(2, 1, 3, 4)))
        layer.CreateFeature(feature)
    ds = ogr.Open(str(out))
    (feature,) = list(ds.GetLayerByName("tiles"))
    assert feature.GetField("a") == 7
    assert feature.GetGeometryRef().GetEnvelope() == (2.0, 5.0, -5.0, -1.0)


def test_suffix_and_existing_file_are_refused(tmp_path):
    with pytest.raises(KdmsiError, match=r"x\.shp must be a GeoPackage"):
        with polygon_layer(tmp_path / "x.shp", GRID, "t", [], "test layer"):
            pass
    (tmp_path / "y.gpkg").write_text("")
    with pytest.raises(KdmsiError, match="already exists"):
        with polygon_layer(tmp_path / "y.gpkg", GRID, "t", [], "test layer"):
            pass
