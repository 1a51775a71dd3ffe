"""The panel: tile grid on Mumbai through the real worker, tag counts, re-vectorize, export,
project state, preselected pair, suggested tiles."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from osgeo import ogr
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import Qt

from kdmsi_qgis.dock import KdmsiDock
from kdmsi_qgis.inputs import file_of, stamp
from kdmsi_qgis.layers import RESULTS_GROUP, tag_layer
from kdmsi_qgis.settings import Options, ProjectState
from kdmsi_qgis.tasks import DetectTask


def make_dock(qgis_iface, mumbai_pair, out_dir):
    project = QgsProject.instance()
    before = QgsRasterLayer(str(mumbai_pair["before"]), "before")
    after = QgsRasterLayer(str(mumbai_pair["after"]), "after")
    project.addMapLayers([before, after])
    dock = KdmsiDock(qgis_iface)
    dock.ui.before_combo.setLayer(before)
    dock.ui.after_combo.setLayer(after)
    dock.ui.bands_edit.setText("3,2,1")
    dock.ui.tile_spin.setValue(128)
    dock.ui.out_dir.setFilePath(str(out_dir))
    return dock


def test_create_tile_grid_adds_the_tag_layer_styled(
    qgis_iface, qgis_new_project, mumbai_pair, tmp_path, finish_panel_task
):
    dock = make_dock(qgis_iface, mumbai_pair, tmp_path)
    task = finish_panel_task(dock, dock.create_grid(), timeout=120)  # the panel added it
    assert task.outcome.ok, task.outcome.error
    layer = dock.ui.tags_combo.currentLayer()
    assert isinstance(layer, QgsVectorLayer) and layer.isValid()
    assert layer.source().startswith(str(tmp_path))
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "label"
    assert layer.crs().authid() == "EPSG:4326"
    total = layer.featureCount()
    assert total > 0
    assert dock.ui.counts_label.text() == f"0 changed, 0 unchanged, {total} untagged"
    dock.store.set_label([next(layer.getFeatures()).id()], 1)
    assert dock.ui.counts_label.text().startswith("1 changed, 0 unchanged")
    state = ProjectState.load()
    assert state.tags == layer.id() and state.before and state.after
    dock.deleteLater()


def test_the_panel_is_never_scrolled_sideways(qgis_iface, qgis_new_project, mumbai_pair, tmp_path):
    """Every control fits the panel's minimum width, long layer names included.

    A panel wider than its dock scrolled sideways and cut the first letters of every label
    (the gui walk's screenshots of session 24); the dock is now at least as wide as the
    controls need, and that width stays within a third of a 1366 px screen.
    """
    dock = make_dock(qgis_iface, mumbai_pair, tmp_path)
    for combo in (dock.ui.before_combo, dock.ui.after_combo):
        combo.currentLayer().setName(f"{combo.currentLayer().name()}: mumbai_20151130_S2_B02_B03")
    area = dock.widget()
    assert area.horizontalScrollBarPolicy() == Qt.ScrollBarAlwaysOff
    assert area.minimumWidth() >= dock.ui.minimumSizeHint().width()
    assert area.minimumWidth() <= 1366 // 3
    dock.deleteLater()


def test_project_state_restores_the_panel(qgis_iface, qgis_new_project, mumbai_pair, tmp_path):
    dock = make_dock(qgis_iface, mumbai_pair, tmp_path)
    dock.state.model = str(tmp_path / "model.pt")
    dock.save_project_state()
    path = tmp_path / "project.qgz"
    assert QgsProject.instance().write(str(path))
    before_id = dock.ui.before_combo.currentLayer().id()
    QgsProject.instance().clear()
    assert QgsProject.instance().read(str(path))
    other = KdmsiDock(qgis_iface)
    assert other.ui.before_combo.currentLayer().id() == before_id
    assert other.ui.model_label.text() == f"{tmp_path.name}/model.pt"
    assert other.ui.model_label.toolTip() == str(tmp_path / "model.pt")
    for d in (dock, other):
        d.deleteLater()


def test_a_reopened_project_shows_the_whole_panel_again(
    qgis_iface, qgis_new_project, mumbai_pair, mumbai_tags, levir_model, tmp_path
):
    """Save, clear, and read the project while a fresh panel is open, as QGIS does at start-up
    with File > Open: its layers arrive one by one and must not overwrite what the file holds."""
    project = QgsProject.instance()
    dock = make_dock(qgis_iface, mumbai_pair, tmp_path / "out")
    tags = QgsVectorLayer(str(mumbai_tags), "KD-MSI tags")
    project.addMapLayer(tags)
    dock.ui.tags_combo.setLayer(tags)
    assert dock.open_model(str(levir_model)) == str(levir_model)
    dock.ui.threshold.set_value(0.123)
    dock.save_project_state()
    expected = ProjectState.load(project)
    assert expected.model == str(levir_model) and expected.tags == tags.id()
    assert (expected.bands, expected.tile, expected.threshold) == ("3,2,1", "128", "0.123")
    path = tmp_path / "project.qgz"
    assert project.write(str(path))
    dock.deleteLater()
    project.clear()

    fresh = KdmsiDock(qgis_iface)  # a new QGIS session: the panel starts empty
    fresh.ui.bands_edit.setText("1,2,3")
    fresh.ui.tile_spin.setValue(256)
    project.readProject.connect(fresh.restore_project)  # as the plugin connects it
    try:
        assert project.read(str(path))
    finally:
        project.readProject.disconnect(fresh.restore_project)
    assert ProjectState.load(project) == expected  # the half-loaded panel wrote nothing
    ui = fresh.ui
    assert ui.tags_combo.currentLayer().id() == expected.tags
    assert ui.before_combo.currentLayer().id() == expected.before
    assert ui.after_combo.currentLayer().id() == expected.after
    assert (ui.bands_edit.text(), ui.tile_spin.value()) == ("3,2,1", 128)
    assert ui.out_dir.filePath() == str(tmp_path / "out")
    assert ui.model_label.toolTip() == str(levir_model)
    assert ui.threshold.value() == 0.123
    assert fresh.store is not None and fresh.ui.counts_label.text().endswith("untagged")
    fresh.deleteLater()


def test_open_model_refuses_a_file_that_is_not_a_model(qgis_iface, qgis_new_project, tmp_path):
    dock = KdmsiDock(qgis_iface)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    assert dock.open_model(str(text)) is None
    assert dock.open_model(str(tmp_path / "missing.pt")) is None
    log = dock.ui.log_view.toPlainText()
    assert "notes.txt is not a model file; choose a model.pt written by Train" in log
    assert "missing.pt does not exist" in log
    assert dock.ui.model_label.text() == "no model"
    dock.deleteLater()


def test_revectorize_and_export_shapefile_keep_the_crs(
    qgis_iface, qgis_new_project, mumbai_pair, tmp_path, wait_for, finish_panel_task
):
    dock = make_dock(qgis_iface, mumbai_pair, tmp_path)
    pair = dock.pair()
    detect = {**pair, "method": "cva", "out": tmp_path / "cva.tif"}
    task = DetectTask(detect, {"prob": tmp_path / "cva.tif", "out": tmp_path / "cva.gpkg"})
    wait_for(task, timeout=120)
    assert task.outcome.ok, task.outcome.error
    dock.state.probability = str(tmp_path / "cva.tif")
    dock.state.polygons = str(tmp_path / "cva.gpkg")
    dock.ui.threshold_slider.setValue(600)  # thousandths
    revector = finish_panel_task(dock, dock.revectorize(), timeout=120)
    assert revector.outcome.ok, revector.outcome.error
    assert revector.outcome.metrics["threshold"] == 0.6
    group = QgsProject.instance().layerTreeRoot().findGroup(RESULTS_GROUP)
    sources = [n.layer().source() for n in group.findLayers()]
    assert not any("cva.gpkg" in s for s in sources)  # the old polygons were replaced
    assert dock.polygons_layer() is not None
    assert dock.polygons_layer().featureCount() > 0

    shp = dock.export(tmp_path / "export" / "changes.shp")
    assert shp is not None and shp.with_suffix(".prj").exists()
    ds = ogr.Open(str(shp))
    srs = ds.GetLayer(0).GetSpatialRef()
    srs.AutoIdentifyEPSG()
    assert srs.GetAuthorityCode(None) == "4326"
    assert ds.GetLayer(0).GetFeatureCount() == dock.polygons_layer().featureCount()
    reopened = QgsVectorLayer(str(shp), "shp", "ogr")
    assert reopened.crs().authid() == "EPSG:4326"
    ds = None
    # the panel's smallest polygon goes to vectorize; 0 keeps the specks
    assert Options().min_pixels == 9  # the default, from core/defaults.json
    counts = {}
    for pixels in (9, 0):
        dock.ui.min_pixels_spin.setValue(pixels)
        task = finish_panel_task(dock, dock.revectorize(), timeout=120)  # added by the panel
        assert task.outcome.ok and task.steps[0][1]["min_pixels"] == pixels
        counts[pixels] = dock.polygons_layer().featureCount()
    assert counts[0] > counts[9] > 0
    dock.ui.min_pixels_spin.setValue(9)  # the setting outlives the test
    dock.deleteLater()


def test_rasters_are_preselected_in_the_order_they_were_added(
    qgis_iface, qgis_new_project, mumbai_pair
):
    dock = KdmsiDock(qgis_iface)
    assert dock.ui.before_combo.currentLayer() is None
    project = QgsProject.instance()
    before = QgsRasterLayer(str(mumbai_pair["before"]), "before")
    project.addMapLayer(before)
    assert dock.ui.before_combo.currentLayer() is before
    assert dock.ui.after_combo.currentLayer() is None
    after = QgsRasterLayer(str(mumbai_pair["after"]), "after")
    project.addMapLayer(after)
    assert dock.ui.after_combo.currentLayer() is after
    other = KdmsiDock(qgis_iface)  # a panel opened later picks the same pair
    assert other.ui.before_combo.currentLayer() is before
    assert other.ui.after_combo.currentLayer() is after
    for d in (dock, other):
        d.unload()
        d.deleteLater()


def test_the_same_raster_twice_is_refused(qgis_iface, qgis_new_project, mumbai_pair, tmp_path):
    dock = make_dock(qgis_iface, mumbai_pair, tmp_path)
    dock.ui.after_combo.setLayer(dock.ui.before_combo.currentLayer())
    qgis_iface.messageBar().clear_messages()
    assert dock.pair() is None
    assert dock.create_grid() is None
    warnings = qgis_iface.messageBar().get_messages(Qgis.Warning)
    assert warnings and "same raster" in warnings[-1]
    dock.unload()
    dock.deleteLater()


def run_from_button(dock, button, finish, timeout: float = 300.0):
    """Click a panel button and process events until the task it started is done."""
    button.click()
    return finish(dock, dock.task, timeout)


def test_suggest_button_adds_a_styled_suggestions_layer(
    qgis_iface, qgis_new_project, levir_pair, levir_tags, levir_model, tmp_path, finish_panel_task
):
    project = QgsProject.instance()
    rasters = [QgsRasterLayer(str(levir_pair[k]), k) for k in ("before", "after")]
    project.addMapLayers(rasters)
    tags_path = tmp_path / "tags.gpkg"
    shutil.copy(levir_tags, tags_path)
    tags = tag_layer(tags_path)
    project.addMapLayer(tags)
    dock = KdmsiDock(qgis_iface)
    dock.ui.before_combo.setLayer(rasters[0])
    dock.ui.after_combo.setLayer(rasters[1])
    dock.ui.tags_combo.setLayer(tags)
    dock.ui.out_dir.setFilePath(str(tmp_path / "out"))
    dock.ui.device_combo.setCurrentText("cpu")
    untag = [f.id() for f in tags.getFeatures()][::2]
    dock.store.set_label(untag, None)
    qgis_iface.messageBar().clear_messages()

    assert dock.suggest() is None  # no model yet
    dock.state.model = str(levir_model)
    for _ in range(2):  # a second run replaces the first layer
        task = run_from_button(dock, dock.ui.suggest_button, finish_panel_task)
        assert task.outcome.ok, task.outcome.error + "\n".join(task.outcome.logs[-20:])
    group = project.layerTreeRoot().findGroup(RESULTS_GROUP)
    found = [n.layer() for n in group.findLayers() if n.layer().name() == "KD-MSI suggested tiles"]
    assert len(found) == 1
    layer = found[0]
    assert layer.isValid() and dock.state.suggestions == file_of(layer)
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "reason"
    assert layer.labelsEnabled()
    reasons = [f["reason"] for f in layer.getFeatures()]
    assert reasons.count("most_change") == len(untag)
    assert set(reasons) <= {"most_change", "disagrees"}
    assert task.outcome.metrics["most_change"] == len(untag)
    infos = qgis_iface.messageBar().get_messages(Qgis.Info)
    assert any("tiles to tag next" in m and "tags the model contradicts" in m for m in infos)
    dock.unload()
    dock.deleteLater()


def test_the_worker_python_field_sets_the_interpreter(qgis_iface, qgis_new_project, tmp_path):
    from qgis.core import QgsSettings

    from kdmsi_qgis.worker import SETTING_PYTHON, find_python

    dock = KdmsiDock(qgis_iface)
    before = QgsSettings().value(SETTING_PYTHON, "", type=str)
    python = Path(find_python()[0])
    try:
        dock.ui.python_file.setFilePath(str(python))  # what choosing a file in the field does
        assert find_python() == (str(python), "setting kdmsi/python")
        dock.ui.python_file.setFilePath(str(tmp_path / "no-python"))
        assert "no-python is not a file; choose the Python interpreter" in (
            dock.ui.log_view.toPlainText()
        )
        assert find_python()[0] == str(python)  # the bad path was not taken
        dock.ui.python_file.setFilePath("")
        assert QgsSettings().value(SETTING_PYTHON, "", type=str) == ""
    finally:
        if before:
            QgsSettings().setValue(SETTING_PYTHON, before)
        else:
            QgsSettings().remove(SETTING_PYTHON)
        dock.deleteLater()


def test_copy_diagnostics_puts_versions_worker_and_log_on_the_clipboard(
    qgis_iface, qgis_new_project
):
    from qgis.PyQt.QtWidgets import QApplication

    from kdmsi_qgis.worker import find_python

    dock = KdmsiDock(qgis_iface)
    dock.ui.log_view.appendPlainText("Model written to run/model.pt: epoch 3 of 5.")
    dock.ui.diagnostics_button.click()
    text = QApplication.clipboard().text()
    assert text.startswith("KD-MSI plugin 0.") and f"QGIS {Qgis.version()}" in text
    assert find_python()[0] in text and "Worker check: worker not checked" in text
    assert text.endswith("Model written to run/model.pt: epoch 3 of 5.")
    dock.deleteLater()


def test_output_names_are_stamped_to_the_millisecond():
    # two Re-vectorize clicks in one second at one threshold used to get the same file name
    assert re.fullmatch(r"\d{8}_\d{6}_\d{3}", stamp())
