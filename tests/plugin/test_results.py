"""Results a user can trust: the threshold slider, the probability style, re-vectorize, export."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QApplication, QFileDialog, QLineEdit

from kdmsi_qgis.dock import KdmsiDock
from kdmsi_qgis.export import ExportError, export_polygons
from kdmsi_qgis.layers import RESULTS_GROUP, add_to_results, polygons_layer, probability_layer
from kdmsi_qgis.probability import stored_threshold, value_range
from kdmsi_qgis.tasks import VectorizeTask

LOW_MAX = 0.26  # a model whose map stops well below 0.5
LOW_THRESHOLD = 0.09


@pytest.fixture()
def low_map(tmp_path, write_raster) -> Path:
    """A 64x64 probability GeoTIFF with values 0..0.26 and a stored threshold of 0.09."""
    rows, cols = np.mgrid[0:64, 0:64]
    values = (LOW_MAX * (rows * 64 + cols) / (64 * 64 - 1)).astype(np.float32)
    path = write_raster(tmp_path / "prob.tif", values)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    dataset.SetMetadataItem("kdmsi_threshold", str(LOW_THRESHOLD))
    dataset = None
    return path


def test_the_probability_style_is_stretched_to_the_map_and_marks_the_threshold(
    qgis_new_project, low_map
):
    layer = probability_layer(low_map)
    assert layer.isValid()
    assert stored_threshold(layer) == pytest.approx(LOW_THRESHOLD)
    assert value_range(layer) == pytest.approx((0.0, LOW_MAX), abs=1e-6)
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor"
    assert renderer.classificationMin() == pytest.approx(0.0, abs=1e-6)
    assert renderer.classificationMax() == pytest.approx(LOW_MAX, abs=1e-6)
    values = gdal.Open(str(low_map)).ReadAsArray()
    block = renderer.block(1, layer.extent(), 64, 64)

    def color(row: int, col: int) -> QColor:
        return QColor.fromRgba(block.color(int(row), int(col)))

    above = np.argwhere((values > LOW_THRESHOLD + 0.01) & (values < 0.15))[0]
    below = np.argwhere(values < LOW_THRESHOLD - 0.01)[-1]
    top = np.unravel_index(np.argmax(values), values.shape)
    opaque = round(255 * layer.opacity())  # the layer is drawn at 80 % over the imagery
    assert color(*above).alpha() == opaque  # changes at 0.1 are plainly visible
    assert color(*top).alpha() == opaque and color(*top).red() > 150
    assert color(*below).alpha() < 100  # below the threshold: faint grey
    assert color(*above) != color(*below)


def test_the_slider_takes_the_map_range_and_the_stored_threshold(qgis_iface, low_map):
    dock = KdmsiDock(qgis_iface)
    layer = QgsRasterLayer(str(low_map), "prob")
    control = dock.ui.threshold
    assert control.follow_map(layer) == pytest.approx(LOW_THRESHOLD)
    assert control.value() == pytest.approx(LOW_THRESHOLD)
    assert dock.ui.threshold_label.text() == "0.090"
    assert control.minimum() == 0.0 and control.maximum() == pytest.approx(LOW_MAX)
    dock.ui.threshold_slider.setValue(dock.ui.threshold_slider.maximum())  # the user drags it
    assert dock.options().threshold == pytest.approx(LOW_MAX)
    assert dock.ui.threshold_label.text() == "0.260"
    dock.unload()
    dock.deleteLater()


@pytest.fixture()
def remembered_threshold():
    """A threshold remembered in QgsSettings from an earlier QGIS run (removed afterwards)."""
    QgsSettings().setValue("kdmsi/threshold", 0.77)
    yield 0.77
    QgsSettings().remove("kdmsi/threshold")


def test_detect_sets_the_slider_from_the_map_not_from_an_earlier_session(
    qgis_iface,
    qgis_new_project,
    levir_pair,
    levir_model,
    tmp_path,
    remembered_threshold,
    finish_panel_task,
):
    rasters = [QgsRasterLayer(str(levir_pair[k]), k) for k in ("before", "after")]
    QgsProject.instance().addMapLayers(rasters)
    dock = KdmsiDock(qgis_iface)
    assert dock.ui.threshold.value() == pytest.approx(remembered_threshold)
    dock.ui.before_combo.setLayer(rasters[0])
    dock.ui.after_combo.setLayer(rasters[1])
    dock.ui.out_dir.setFilePath(str(tmp_path))
    dock.ui.device_combo.setCurrentText("cpu")
    dock.state.model = str(levir_model)
    dock.ui.detect_button.click()
    task = finish_panel_task(dock, dock.task)
    assert task.outcome.ok, task.outcome.error
    stored = float(gdal.Open(dock.state.probability).GetMetadataItem("kdmsi_threshold"))
    values = gdal.Open(dock.state.probability).ReadAsArray()
    assert stored != pytest.approx(remembered_threshold)
    assert dock.ui.threshold.value() == pytest.approx(stored)
    assert dock.options().threshold == pytest.approx(stored)
    assert dock.ui.threshold_label.text() == f"{stored:.3f}"
    control = dock.ui.threshold
    assert control.minimum() <= min(float(values.min()), stored)
    assert control.maximum() >= max(float(values.max()), stored)
    assert control.maximum() <= math.ceil(max(float(values.max()), stored) * 1000) / 1000
    assert task.probability.renderer().classificationMax() == pytest.approx(
        float(values.max()), abs=1e-4
    )
    dock.unload()
    dock.deleteLater()


def test_a_revectorize_without_polygons_keeps_the_previous_layer(
    qgis_iface, qgis_new_project, low_map, finish_panel_task
):
    dock = KdmsiDock(qgis_iface)
    dock.state.probability = str(low_map)
    dock.ui.threshold.set_value(LOW_THRESHOLD)
    first = finish_panel_task(dock, dock.revectorize())
    assert first.outcome.ok and first.outcome.metrics["count"] > 0, first.outcome.error
    kept = dock.state.polygons
    count = dock.polygons_layer().featureCount()
    assert kept and count > 0
    qgis_iface.messageBar().clear_messages()
    dock.ui.threshold_slider.setValue(500)  # 0.5: above every value of the map
    second = finish_panel_task(dock, dock.revectorize())
    assert second.outcome.ok and second.outcome.metrics["count"] == 0
    assert dock.state.polygons == kept
    assert dock.polygons_layer() is not None and dock.polygons_layer().featureCount() == count
    group = QgsProject.instance().layerTreeRoot().findGroup(RESULTS_GROUP)
    assert [n.layer().name() for n in group.findLayers()] == ["KD-MSI changes"]
    warnings = qgis_iface.messageBar().get_messages(Qgis.Warning)
    assert len(warnings) == 1 and "0.500 gives no change polygons" in warnings[0]
    assert "previous change polygons were kept" in warnings[0]
    assert "previous change polygons were kept" in dock.ui.log_view.toPlainText()
    dock.unload()
    dock.deleteLater()


def empty_polygons(low_map: Path, wait_for) -> Path:
    """A real polygon file with no feature (threshold above the map)."""
    out = low_map.with_name("empty.gpkg")
    task = VectorizeTask({"prob": low_map, "out": out, "threshold": 0.5})
    wait_for(task, timeout=120)
    assert task.outcome.ok and task.outcome.metrics["count"] == 0, task.outcome.error
    return out


def test_an_empty_layer_is_not_exported(qgis_iface, qgis_new_project, low_map, wait_for):
    path = empty_polygons(low_map, wait_for)
    layer = add_to_results(polygons_layer(path))
    assert layer.isValid() and layer.featureCount() == 0
    dock = KdmsiDock(qgis_iface)
    dock.state.polygons = str(path)
    qgis_iface.messageBar().clear_messages()
    target = low_map.parent / "export" / "changes.shp"
    assert dock.export(target) is None
    assert not target.exists() and not target.parent.exists()
    warnings = qgis_iface.messageBar().get_messages(Qgis.Warning)
    assert warnings and "no change polygons to export, so no file was written" in warnings[-1]
    with pytest.raises(ExportError, match="no file was written"):
        export_polygons(layer, target)
    assert not target.exists()
    dock.unload()
    dock.deleteLater()


def open_file_dialog() -> Optional[QFileDialog]:
    """The file dialog on screen, if any."""
    found = [w for w in QApplication.topLevelWidgets() if isinstance(w, QFileDialog)]
    return next((d for d in found if d.isVisible()), None)


def fill_export_dialog(folder: Path, name: str, name_filter: str, seen: list) -> None:
    """Type a name and choose a file type in the open export dialog, then save, as a user would."""
    dialog = open_file_dialog()
    if dialog is None:
        QTimer.singleShot(100, lambda: fill_export_dialog(folder, name, name_filter, seen))
        return
    seen.append(dialog.windowTitle())
    dialog.setDirectory(str(folder))
    dialog.selectNameFilter(name_filter)
    dialog.findChild(QLineEdit, "fileNameEdit").setText(name)
    dialog.accept()


def close_file_dialog() -> None:
    """A dialog still open (the test failed to fill it) is closed, so the test ends."""
    dialog = open_file_dialog()
    if dialog is not None:
        dialog.reject()


@pytest.mark.parametrize(
    ("name_filter", "suffix"), [("GeoPackage (*.gpkg)", ".gpkg"), ("Shapefile (*.shp)", ".shp")]
)
def test_an_export_name_without_extension_takes_the_chosen_type(
    qgis_iface, qgis_new_project, low_map, name_filter, suffix, finish_panel_task
):
    dock = KdmsiDock(qgis_iface)
    dock.state.probability = str(low_map)
    dock.ui.threshold.set_value(LOW_THRESHOLD)
    finish_panel_task(dock, dock.revectorize())
    assert dock.polygons_layer() is not None
    seen: list = []
    QTimer.singleShot(100, lambda: fill_export_dialog(low_map.parent, "changes", name_filter, seen))
    QTimer.singleShot(30_000, close_file_dialog)
    written = dock.export()
    assert seen == ["Export changes"]
    assert written == low_map.parent / f"changes{suffix}"
    assert written.exists() and not (low_map.parent / "changes").exists()
    dock.unload()
    dock.deleteLater()
