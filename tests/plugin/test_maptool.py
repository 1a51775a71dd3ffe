"""The tagging map tool writes tags to the GeoPackage at once, from simulated mouse events."""

from __future__ import annotations

import shutil

import pytest
from osgeo import ogr
from qgis.core import QgsPointXY, QgsProject
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt

from kdmsi_qgis.layers import tag_layer
from kdmsi_qgis.maptool import TagMapTool, TagStore


def labels_on_disk(path) -> dict[int, object]:
    """tile_id -> label, read with OGR (not through QGIS)."""
    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("tiles")
    out = {}
    for feature in layer:
        label = feature.GetField("label") if feature.IsFieldSetAndNotNull("label") else None
        out[feature.GetField("tile_id")] = label
    return out


def tile_centres(path) -> dict[int, tuple[float, float]]:
    ds = ogr.Open(str(path))
    out = {}
    for feature in ds.GetLayerByName("tiles"):
        centroid = feature.GetGeometryRef().Centroid()
        out[feature.GetField("tile_id")] = (centroid.GetX(), centroid.GetY())
    return out


def tile_bounds(path, tile_id) -> tuple[float, float, float, float]:
    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("tiles")
    layer.SetAttributeFilter(f"tile_id = {tile_id}")
    feature = layer.GetNextFeature()
    envelope = feature.GetGeometryRef().GetEnvelope()  # minx, maxx, miny, maxy
    ds = None
    return envelope


@pytest.fixture()
def tagging(mumbai_tags, tmp_path, qgis_canvas, qgis_new_project):
    path = tmp_path / "tags.gpkg"
    shutil.copy(mumbai_tags, path)
    layer = tag_layer(path)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    qgis_canvas.resize(600, 600)
    qgis_canvas.setDestinationCrs(layer.crs())
    qgis_canvas.setExtent(layer.extent())
    qgis_canvas.refresh()
    tool = TagMapTool(qgis_canvas, TagStore(layer))
    qgis_canvas.setMapTool(tool)
    yield path, tool
    qgis_canvas.unsetMapTool(tool)


def pixel(canvas, x: float, y: float) -> QPoint:
    point = canvas.getCoordinateTransform().transform(QgsPointXY(x, y))
    return QPoint(round(point.x()), round(point.y()))


def click(tool, pos: QPoint, button=Qt.LeftButton, modifiers=Qt.NoModifier, end=None) -> None:
    canvas = tool.canvas()
    press = QgsMapMouseEvent(canvas, QEvent.MouseButtonPress, pos, button, button, modifiers)
    tool.canvasPressEvent(press)
    end = end or pos
    if end != pos:
        move = QgsMapMouseEvent(canvas, QEvent.MouseMove, end, Qt.NoButton, button, modifiers)
        tool.canvasMoveEvent(move)
    release = QgsMapMouseEvent(
        canvas, QEvent.MouseButtonRelease, end, button, Qt.NoButton, modifiers
    )
    tool.canvasReleaseEvent(release)


def test_clicks_tag_changed_unchanged_and_clear(tagging, qgis_canvas):
    path, tool = tagging
    centres = tile_centres(path)
    first, second = sorted(centres)[:2]
    click(tool, pixel(qgis_canvas, *centres[first]), Qt.LeftButton)
    click(tool, pixel(qgis_canvas, *centres[second]), Qt.RightButton)
    on_disk = labels_on_disk(path)
    assert on_disk[first] == 1
    assert on_disk[second] == 0
    assert sum(v is not None for v in on_disk.values()) == 2
    click(tool, pixel(qgis_canvas, *centres[first]), Qt.LeftButton, Qt.ShiftModifier)
    assert labels_on_disk(path)[first] is None
    assert tool.store.counts() == {"changed": 0, "unchanged": 1, "untagged": len(centres) - 1}


def test_drag_tags_every_tile_in_the_rectangle_and_undo_restores(tagging, qgis_canvas):
    path, tool = tagging
    ids = sorted(tile_centres(path))
    # a rectangle from inside tile 0 to inside tile 1+ncols: tiles of two rows and two columns
    minx0, _, _, maxy0 = tile_bounds(path, ids[0])
    ncols = sum(
        1 for _, y in tile_centres(path).values() if abs(y - tile_centres(path)[ids[0]][1]) < 1e-9
    )
    _, maxx1, miny1, _ = tile_bounds(path, ids[ncols + 1])
    inset = 1e-4
    start = pixel(qgis_canvas, minx0 + inset, maxy0 - inset)
    end = pixel(qgis_canvas, maxx1 - inset, miny1 + inset)
    click(tool, start, Qt.LeftButton, end=end)
    on_disk = labels_on_disk(path)
    expected = {ids[0], ids[1], ids[ncols], ids[ncols + 1]}
    assert {k for k, v in on_disk.items() if v == 1} == expected
    click(tool, pixel(qgis_canvas, *tile_centres(path)[ids[0]]), Qt.RightButton)
    assert labels_on_disk(path)[ids[0]] == 0
    assert tool.store.undo()
    assert labels_on_disk(path)[ids[0]] == 1
    assert tool.store.undo()
    assert all(v is None for v in labels_on_disk(path).values())
    assert not tool.store.undo()
