"""Train, detect and vectorize tasks run the real worker and add styled layers."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer

from core.models.model_file import load_model
from kdmsi_qgis.dock import KdmsiDock
from kdmsi_qgis.layers import RESULTS_GROUP, tag_layer
from kdmsi_qgis.settings import Options, ProjectState
from kdmsi_qgis.tasks import DetectTask, TrainTask


def results_layers() -> list:
    group = QgsProject.instance().layerTreeRoot().findGroup(RESULTS_GROUP)
    return [node.layer() for node in group.findLayers()] if group else []


def test_train_task_writes_a_model(
    levir_pair, levir_tags, tmp_path, qgis_iface, wait_for, train_options
):
    events = []
    qgis_iface.messageBar().clear_messages()
    task = TrainTask(train_options(levir_pair, levir_tags, tmp_path / "run"), qgis_iface)
    task.event_received.connect(events.append)
    wait_for(task, timeout=300)
    assert task.outcome.ok, task.outcome.error
    assert task.model is not None and task.model.exists()
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    kinds = {e["event"] for e in events}
    assert {"progress", "metric", "result"} <= kinds
    metrics = task.outcome.metrics
    assert metrics["method"] == "kdmsi-cva"  # detect's auto map, whatever the held-out tags say
    if not metrics["reliable"]:
        level, words = Qgis.Warning, "better than chance"
    elif metrics["leader"]:
        level, words = Qgis.Info, "still draws the combined map"
    else:
        level, words = Qgis.Success, "Model trained"
    said = qgis_iface.messageBar().get_messages(level)
    assert any(str(task.model) in m and words in m for m in said), said


def test_detect_task_adds_probability_and_polygons(
    levir_pair, levir_model, tmp_path, qgis_iface, qgis_new_project, wait_for
):
    detect = {
        "before": levir_pair["before"],
        "after": levir_pair["after"],
        "model": levir_model,
        "out": tmp_path / "prob.tif",
        "device": "cpu",
        "scales": "1",
    }
    vectorize = {"prob": tmp_path / "prob.tif", "out": tmp_path / "changes.gpkg", "threshold": 0.2}
    task = DetectTask(detect, vectorize, qgis_iface)
    wait_for(task, timeout=300)
    assert task.outcome.ok, task.outcome.error
    added = results_layers()
    rasters = [lyr for lyr in added if isinstance(lyr, QgsRasterLayer)]
    vectors = [lyr for lyr in added if isinstance(lyr, QgsVectorLayer)]
    assert len(rasters) == 1 and rasters[0].renderer().type() == "singlebandpseudocolor"
    assert len(vectors) == 1 and vectors[0].isValid()


def test_failed_run_pushes_one_clear_error(
    tmp_path, qgis_iface, qgis_new_project, worker_python, wait_for
):
    qgis_iface.messageBar().clear_messages()
    detect = {
        "before": tmp_path / "missing_a.tif",
        "after": tmp_path / "missing_b.tif",
        "method": "cva",
        "out": tmp_path / "prob.tif",
    }
    task = DetectTask(detect, None, qgis_iface)
    wait_for(task, timeout=60)
    assert not task.outcome.ok
    errors = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert len(errors) == 1 and "missing_a.tif" in errors[0]
    assert not results_layers()


def test_cancel_training_keeps_a_checkpoint(
    levir_pair, levir_tags, tmp_path, qgis_iface, train_options
):
    run_dir = tmp_path / "run"
    task = TrainTask(train_options(levir_pair, levir_tags, run_dir, epochs=200), qgis_iface)
    steps = []
    task.event_received.connect(lambda e: e["event"] == "metric" and steps.append(e))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 240
    while not steps and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.05)
    assert steps, "training never reached its first step"
    task.cancel()
    deadline = time.monotonic() + 240
    while task.outcome.returncode is None and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QgsApplication.processEvents()
    assert task.outcome.canceled
    assert task.outcome.returncode is not None
    assert (run_dir / "checkpoint.pt").exists()


def test_a_canceled_training_in_the_panel_is_information_and_can_be_resumed(
    levir_pair, levir_tags, tmp_path, qgis_iface, qgis_new_project, finish_panel_task
):
    project = QgsProject.instance()
    rasters = [QgsRasterLayer(str(levir_pair[k]), k) for k in ("before", "after")]
    project.addMapLayers(rasters)
    tags = tag_layer(Path(shutil.copy(levir_tags, tmp_path / "tags.gpkg")))
    project.addMapLayer(tags)
    dock = KdmsiDock(qgis_iface)
    dock.ui.before_combo.setLayer(rasters[0])
    dock.ui.after_combo.setLayer(rasters[1])
    dock.ui.tags_combo.setLayer(tags)
    dock.ui.out_dir.setFilePath(str(tmp_path / "out"))
    dock.ui.backbone_combo.setCurrentText("resnet18")
    dock.ui.device_combo.setCurrentText("cpu")
    dock.ui.epochs_spin.setValue(20)
    dock.ui.edges_check.setChecked(True)  # "Follow colour edges" reaches the model (below)
    qgis_iface.messageBar().clear_messages()
    dock.ui.train_button.click()
    task = dock.task
    assert isinstance(task, TrainTask), dock.ui.log_view.toPlainText()
    deadline = time.monotonic() + 240
    while dock.ui.progress.value() < 5 and dock.task is not None:  # a first epoch finished
        assert time.monotonic() < deadline, "training never finished its first epoch"
        QgsApplication.processEvents()
        time.sleep(0.05)
    dock.ui.cancel_button.click()
    deadline = time.monotonic() + 240
    while dock.task is not None:
        assert time.monotonic() < deadline, "the canceled training did not stop"
        QgsApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QgsApplication.processEvents()
    assert task.outcome.canceled and task.outcome.returncode == 130
    assert dock.ui.progress.value() == 0
    assert not qgis_iface.messageBar().get_messages(Qgis.Critical)
    infos = qgis_iface.messageBar().get_messages(Qgis.Info)
    checkpoint = task.run_dir / "checkpoint.pt"
    assert checkpoint.exists()
    sentence = f"Training was canceled; its checkpoint was kept in {checkpoint}"
    assert any(sentence in m for m in infos), infos
    log = dock.ui.log_view.toPlainText()
    assert sentence in log
    assert not [line for line in log.splitlines() if line.startswith("error:")], log
    assert dock.state.model == ""  # a canceled run does not become the panel's model
    # Resume continues the canceled run in its folder; when it ends, the checkpoint goes
    assert dock.ui.resume_button.isEnabled()
    assert dock.state.resumable == str(task.run_dir)
    assert ProjectState.load(project).resumable == str(task.run_dir)  # survives a reopen
    dock.ui.epochs_spin.setValue(2)
    dock.ui.resume_button.click()
    resumed = finish_panel_task(dock, dock.task)
    assert isinstance(resumed, TrainTask) and resumed.outcome.ok, resumed.outcome.error
    assert resumed.run_dir == task.run_dir
    assert any("Resumed from" in line for line in resumed.outcome.logs)
    assert dock.state.model == str(task.run_dir / "model.pt")
    assert load_model(task.run_dir / "model.pt")[0].affinity_rounds == 10
    assert Options.load().follow_edges  # remembered with the panel's other parameters
    replace(Options.load(), follow_edges=False).save()  # later tests train with the default
    assert not checkpoint.exists()  # the finished run keeps its model only
    assert not dock.ui.resume_button.isEnabled() and dock.state.resumable == ""
    assert "checkpoint (" in dock.ui.log_view.toPlainText()
    dock.unload()
    dock.deleteLater()


def test_the_panel_shows_the_progress_of_the_whole_task_as_the_task_bar_does(qgis_iface):
    task = DetectTask({"out": "p.tif"}, {"prob": "p.tif", "out": "c.gpkg"}, qgis_iface)
    seen = []
    task.event_received.connect(seen.append)
    task._step = 1  # the second of its two steps (vectorize), half done
    task._on_event({"event": "progress", "fraction": 0.5, "stage": "vectorize", "message": ""})
    assert seen[-1]["overall"] == 0.75 and task.progress() == 75.0
