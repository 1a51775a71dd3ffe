"""Faults seen from QGIS: a bad input and a killed worker each give one message-bar error, and
the tags and earlier results on disk stay as they were.

Runs the real worker (``python -m core``) from QGIS tasks, offscreen.
"""

from __future__ import annotations

import os
import signal
import time

from qgis.core import Qgis, QgsApplication, QgsProject

from kdmsi_qgis.tasks import GridTask, TrainTask


def test_corrupt_raster_gives_one_error_naming_it(
    levir_pair, tmp_path, qgis_iface, qgis_new_project, worker_python, wait_for
):
    qgis_iface.messageBar().clear_messages()
    broken = tmp_path / "before.tif"
    data = levir_pair["before"].read_bytes()
    broken.write_bytes(b"\0" * 16 + data[16:])
    options = {
        "before": broken,
        "after": levir_pair["after"],
        "tile": 64,
        "out": tmp_path / "t.gpkg",
    }
    task = GridTask(options, qgis_iface)
    wait_for(task, timeout=60)
    assert not task.outcome.ok and task.outcome.returncode == 2
    errors = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert len(errors) == 1 and str(broken) in errors[0]
    assert not (tmp_path / "t.gpkg").exists()
    assert not QgsProject.instance().mapLayers()


def test_killed_worker_is_an_error_and_keeps_tags_and_earlier_results(
    levir_pair, levir_tags, levir_model, tmp_path, qgis_iface, train_options
):
    qgis_iface.messageBar().clear_messages()
    tags_before, model_before = levir_tags.read_bytes(), levir_model.read_bytes()
    run_dir = tmp_path / "run"
    task = TrainTask(train_options(levir_pair, levir_tags, run_dir, epochs=200), qgis_iface)
    steps = []
    task.event_received.connect(lambda e: e["event"] == "metric" and steps.append(e))
    finished = []
    task.taskTerminated.connect(lambda: finished.append(True))
    task.taskCompleted.connect(lambda: finished.append(True))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 240
    while not steps and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.05)
    assert steps, "training never reached its first step"
    os.kill(task.worker.process.pid, signal.SIGKILL)  # the worker this test started
    deadline = time.monotonic() + 60
    while not finished and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QgsApplication.processEvents()
    assert finished and not task.outcome.ok and not task.outcome.canceled
    assert task.outcome.returncode == -signal.SIGKILL
    errors = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert len(errors) == 1 and f"status {-signal.SIGKILL}" in errors[0]
    assert levir_tags.read_bytes() == tags_before
    assert levir_model.read_bytes() == model_before
    assert not (run_dir / "model.pt").exists()  # killed in epoch 1: no model that looks done
