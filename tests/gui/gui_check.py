"""The GUI check, run inside the real QGIS (``qgis --code tests/gui/gui_check.py``) under Xvfb.

It drives the installed plugin the way a person would: opens the KD-MSI panel over a before/after
pair, creates the tile grid, tags tiles with simulated mouse clicks on the map canvas (the tagging
map tool's own event path), trains one short run (canceled in its second epoch with the panel's
Cancel, then continued with Resume), suggests tiles, detects changes, moves the threshold,
exports the polygons as a Shapefile, saves and reopens the project, and takes a
screenshot of the whole screen at each stage with ImageMagick's ``import``. Every long step is a
QgsTask; the script only reacts to their ``done`` signals and to timers, so QGIS's event loop
never blocks. An overall timer quits QGIS if something hangs. ``tests/gui/run_gui_check.sh``
prepares the profile and the data and reads ``result.json``.

Configuration (environment): KDMSI_GUI_BEFORE, KDMSI_GUI_AFTER, KDMSI_GUI_LABEL (pixel mask used
only to pick which tiles to click), KDMSI_GUI_BANDS, KDMSI_GUI_WORK (output folder),
KDMSI_GUI_SHOTS (screenshot folder), KDMSI_GUI_TIMEOUT (s), KDMSI_GUI_BACKBONE, KDMSI_GUI_EPOCHS,
KDMSI_GUI_TILE, KDMSI_GUI_INSTALL (set: first run Raster > KD-MSI > Install dependencies and walk
with the worker it builds in the profile; the runner then gives no KDMSI_PYTHON).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from osgeo import gdal
from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QAction, QApplication, QDockWidget
from qgis.utils import iface, plugins
from walk_tools import (
    CHANGED_AREA,
    ENV,
    SCREEN,
    SETTLE_MS,
    SHOTS,
    TIMEOUT_S,
    WORK,
    answer_save_prompt,
    exit_hung,
    log,
    rgb_layer,
    screenshot,
    tiles_to_tag,
)


class GuiCheck:
    """The steps, each started by the previous one's signal."""

    def __init__(self) -> None:
        self.plugin = plugins["kdmsi_qgis"]
        self.dock = self.plugin.dock
        self.canvas = iface.mapCanvas()
        self.result: dict[str, Any] = {"ok": False, "shots": [], "steps": []}
        self.train_shot = False
        self.cancel_clicked = False
        self.install_done = not ENV.get("KDMSI_GUI_INSTALL")
        self.timers: list[QTimer] = []
        self.finished = False

    # ---- plumbing ----------------------------------------------------------------------------
    def later(self, ms: int, step: Callable[[], None]) -> None:
        """Run a step after ``ms`` milliseconds, guarded."""
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(lambda: self.guarded(step))
        timer.start(ms)
        self.timers.append(timer)

    def guarded(self, step: Callable[[], None], *args: Any) -> None:
        """Run a step; any exception ends the check as failed."""
        if self.finished:
            return
        try:
            self.result["steps"].append(step.__name__)
            log(f"step {step.__name__}")
            step(*args)
        except Exception:  # report whatever went wrong, then quit
            self.fail(traceback.format_exc())

    def when_done(self, task: Any, step: Callable[[Any], None]) -> None:
        """Run ``step(task)`` once the panel's task finished; fail if it did not start."""
        if task is None:
            raise RuntimeError("the panel did not start a task: " + self.panel_log())
        task.done.connect(lambda t: self.guarded(step, t))

    def shoot_when_drawn(self, name: str, then: Callable[[], None]) -> None:
        """Refresh the map, wait until it is drawn and settled, take a screenshot, go on."""
        self.canvas.refresh()
        deadline = time.monotonic() + 60

        def poll() -> None:
            if self.canvas.isDrawing() and time.monotonic() < deadline:
                self.later(200, poll)
                return
            QApplication.processEvents()
            self.result["shots"].append(str(screenshot(name)))
            then()

        self.later(SETTLE_MS, poll)

    def panel_log(self) -> str:
        """The panel's log text (for failures)."""
        return self.dock.ui.log_view.toPlainText()[-3000:]

    def check_ok(self, task: Any) -> None:
        """Fail unless the task's worker run succeeded."""
        if not task.outcome.ok:
            logs = "\n".join(task.outcome.logs[-30:])
            raise RuntimeError(f"{task.description()} failed: {task.outcome.error}\n{logs}")

    # ---- the steps ---------------------------------------------------------------------------
    def install(self) -> None:
        """Raster > KD-MSI > Install dependencies, as a first-time user; then the walk."""
        iface.mainWindow().setGeometry(0, 0, *SCREEN)
        action = iface.mainWindow().findChild(QAction, "kdmsi_install")
        if action is None:
            raise RuntimeError("the Install dependencies action is missing")
        action.trigger()
        task = self.plugin.install_task
        task.taskCompleted.connect(lambda: self.guarded(self.installed, task))
        task.taskTerminated.connect(lambda: self.fail(f"the install failed: {task.error}"))

    def installed(self, task: Any) -> None:
        """The worker is the environment just built in the profile; go on with the walk."""
        from kdmsi_qgis.worker import find_python

        python, source = find_python()
        self.result["install"] = {"python": python, "found as": source, "plan": str(task.plan)}
        log(f"installed; the worker is {python} ({source})")
        if not Path(python).is_relative_to(task.venv):
            raise RuntimeError(f"the worker is {python} ({source}), not the installed {task.venv}")
        self.install_done = True
        self.dock.widget().ensureWidgetVisible(self.dock.ui.log_view)  # the install's log
        self.dock.ui.log_view.verticalScrollBar().setValue(0)  # the plan's sentence, on top
        self.shoot_when_drawn("0_first_run.png", self.start)

    def start(self) -> None:
        """Full-screen window, the pair as RGB layers, the panel open and filled in."""
        if not self.install_done:
            self.install()
            return
        window = iface.mainWindow()
        window.setGeometry(0, 0, *SCREEN)
        bands = [int(b) for b in ENV.get("KDMSI_GUI_BANDS", "1,2,3").split(",")]
        project = QgsProject.instance()
        for key in ("BEFORE", "AFTER"):
            path = ENV[f"KDMSI_GUI_{key}"]
            layer = rgb_layer(path, f"{key.lower()}: {Path(path).stem}", bands)
            project.addMapLayer(layer)
        browser = window.findChild(QDockWidget, "Browser")
        if browser is not None:
            browser.hide()  # more room for the map
        if not self.dock.isVisible():
            self.plugin.panel_action.trigger()
        ui = self.dock.ui
        picked = [c.currentLayer() for c in (ui.before_combo, ui.after_combo)]
        self.result["preselected"] = [layer.name() if layer else None for layer in picked]
        if any(layer is None for layer in picked) or picked[0] is picked[1]:
            raise RuntimeError(f"the pair was not preselected: {self.result['preselected']}")
        ui.bands_edit.setText(ENV.get("KDMSI_GUI_BANDS", ""))
        ui.tile_spin.setValue(int(ENV.get("KDMSI_GUI_TILE", "128")))
        ui.backbone_combo.setCurrentText(ENV.get("KDMSI_GUI_BACKBONE", "efficientnet-lite0"))
        ui.epochs_spin.setValue(int(ENV.get("KDMSI_GUI_EPOCHS", "1")))
        ui.device_combo.setCurrentText("cpu")
        ui.out_dir.setFilePath(str(WORK / "out"))
        self.canvas.setExtent(picked[0].extent())
        self.when_done(self.dock.create_grid(), self.tag)

    def tag(self, task: Any) -> None:
        """Click tiles with the tagging tool: left = changed, right = unchanged."""
        self.check_ok(task)
        layer = self.dock.ui.tags_combo.currentLayer()
        changed, unchanged = tiles_to_tag(layer, ENV.get("KDMSI_GUI_LABEL", ""))
        self.dock.ui.tag_button.setChecked(True)
        if self.canvas.mapTool() is not self.dock.tool:
            raise RuntimeError("the tagging tool is not the canvas's map tool")
        for features, button in ((changed, Qt.LeftButton), (unchanged, Qt.RightButton)):
            for feature in features:
                self.click(layer, feature, button)
        counts = self.dock.store.counts()
        self.result["tags"] = counts
        log(f"tags {counts}")
        if counts["changed"] != len(changed) or counts["unchanged"] != len(unchanged):
            raise RuntimeError(f"clicks tagged {counts}, expected {len(changed)}/{len(unchanged)}")
        self.dock.widget().ensureWidgetVisible(self.dock.ui.before_combo)  # the panel's top
        self.shoot_when_drawn("1_tagged_grid.png", self.train)

    def click(self, layer: Any, feature: Any, button: int) -> None:
        """A real mouse click on the canvas at the centre of a tile."""
        centre = feature.geometry().centroid().asPoint()
        to_canvas = QgsCoordinateTransform(
            layer.crs(), self.canvas.mapSettings().destinationCrs(), QgsProject.instance()
        )
        point = to_canvas.transform(QgsPointXY(centre))
        pixel = self.canvas.getCoordinateTransform().transform(point)
        pos = QPoint(round(pixel.x()), round(pixel.y()))
        QTest.mouseClick(self.canvas.viewport(), button, Qt.NoModifier, pos)
        QApplication.processEvents()

    def train(self) -> None:
        """Train from the tags; a screenshot while it runs; Cancel in the second epoch."""
        self.dock.ui.tag_button.setChecked(False)
        task = self.dock.train()
        self.when_done(task, self.canceled)
        task.event_received.connect(self.on_train_event)

    def on_train_event(self, event: dict) -> None:
        """Screenshot once training is under way; Cancel as soon as the second epoch runs."""
        if event.get("event") != "progress":
            return
        if float(event.get("fraction", 0)) >= 0.3 and not self.train_shot:
            self.train_shot = True
            self.later(300, self.shoot_training)
        if str(event.get("message", "")).startswith("epoch 2/") and not self.cancel_clicked:
            self.cancel_clicked = True
            log("clicking Cancel in the second epoch")
            self.dock.ui.cancel_button.click()

    def shoot_training(self) -> None:
        """The panel's progress bar and log while the worker trains."""
        self.result["shots"].append(str(screenshot("2_training.png")))

    def canceled(self, task: Any) -> None:
        """The canceled run kept its checkpoint, the panel offers Resume and keeps no model."""
        if not (self.cancel_clicked and task.was_canceled):
            raise RuntimeError(f"training was not canceled: {task.outcome.error or 'it finished'}")
        if not (task.run_dir / "checkpoint.pt").exists() or self.dock.state.model:
            raise RuntimeError("the canceled run left no checkpoint, or the panel took its model")
        if not self.dock.ui.resume_button.isEnabled():
            raise RuntimeError("Resume is not enabled after a canceled training")
        self.result["canceled"] = task.canceled_message()
        self.shoot_when_drawn("2_training_canceled.png", self.resume)

    def resume(self) -> None:
        """Press Resume: the same run folder continues from its checkpoint."""
        self.dock.ui.resume_button.click()
        task = self.dock.task
        if task is None or not task.steps[0][1].get("resume"):
            raise RuntimeError("Resume did not start a resumed training")
        self.when_done(task, self.suggest)

    def suggest(self, task: Any) -> None:
        """Suggest tiles to tag next with the resumed run's model."""
        self.check_ok(task)
        if not any("Resumed from" in line for line in task.outcome.logs):
            raise RuntimeError("the resumed training started over instead of continuing")
        if (task.run_dir / "checkpoint.pt").exists() or self.dock.ui.resume_button.isEnabled():
            raise RuntimeError("the finished run's checkpoint is still offered for Resume")
        self.result["train"] = task.outcome.metrics
        self.when_done(self.dock.suggest(), self.after_suggest)

    def after_suggest(self, task: Any) -> None:
        """Screenshot of the suggested tiles over the tagged grid, then detect."""
        self.check_ok(task)
        self.result["suggest"] = task.outcome.metrics
        self.shoot_when_drawn("3_suggested_tiles.png", self.detect)

    def detect(self) -> None:
        """Detect changes with the model (probability raster and polygons)."""
        self.when_done(self.dock.detect(), self.show_changes)

    def show_changes(self, task: Any) -> None:
        """The probability map over the after image, as detect left it (slider at its threshold)."""
        self.check_ok(task)
        self.result["detect"] = task.outcome.metrics
        self.result["detect_threshold"] = self.dock.ui.threshold.value()
        from kdmsi_qgis.panel_state import raster_layer_of

        probability = raster_layer_of(self.dock.state.probability, QgsProject.instance())
        self.show_only(lambda layer: layer is probability)
        self.shoot_when_drawn("4_probability_map.png", self.move_threshold)

    def move_threshold(self) -> None:
        """Move the threshold slider as a person would, then re-vectorize."""
        dataset = gdal.Open(self.dock.state.probability)
        band = dataset.GetRasterBand(1)
        sample = band.ReadAsArray(buf_xsize=256, buf_ysize=256)
        threshold = float(np.quantile(sample, 1.0 - CHANGED_AREA))
        self.dock.ui.threshold_slider.setValue(round(threshold * 1000))  # thousandths
        self.result["threshold"] = self.dock.ui.threshold.value()
        self.when_done(self.dock.revectorize(), self.show_polygons)

    def show_only(self, shown: Callable[[Any], bool]) -> None:
        """Show the after image and the layers ``shown`` accepts; hide the rest."""
        root = QgsProject.instance().layerTreeRoot()
        for layer in QgsProject.instance().mapLayers().values():
            visible = shown(layer) or layer.name().startswith("after")
            root.findLayer(layer.id()).setItemVisibilityChecked(visible)

    def show_polygons(self, task: Any) -> None:
        """Change polygons over the after image (exported as a Shapefile too)."""
        self.check_ok(task)
        polygons = self.dock.polygons_layer()
        if polygons is None or polygons.featureCount() <= 0:
            raise RuntimeError("no change polygons were added")
        self.result["polygons"] = polygons.featureCount()
        exported = self.dock.export(WORK / "export" / "changes.shp")
        written = QgsVectorLayer(str(exported), "exported", "ogr") if exported else None
        if written is None or written.featureCount() != polygons.featureCount():
            raise RuntimeError(f"Export wrote {exported}, not {polygons.featureCount()} polygons")
        self.result["exported"] = str(exported)
        self.show_only(lambda layer: layer is polygons)
        self.shoot_when_drawn("5_change_polygons.png", self.save_and_reopen)

    def save_and_reopen(self) -> None:
        """Save the project, open it again as File > Open does, and find the panel as it was."""
        project = QgsProject.instance()
        path = WORK / "project.qgz"
        self.dock.save_project_state()
        if not project.write(str(path)):
            raise RuntimeError(f"the project could not be saved to {path}")
        ui = self.dock.ui
        before = (ui.model_label.toolTip(), ui.tags_combo.currentLayer().name(),
                  ui.bands_edit.text(), round(ui.threshold.value(), 3))  # fmt: skip
        project.setDirty(False)
        iface.addProject(str(path))
        after = (ui.model_label.toolTip(), ui.tags_combo.currentLayer().name(),
                 ui.bands_edit.text(), round(ui.threshold.value(), 3))  # fmt: skip
        self.result["reopened"] = {"before": before, "after": after}
        if after != before:
            raise RuntimeError(f"the reopened project shows {after}, not {before}")
        self.shoot_when_drawn("6_reopened_project.png", self.succeed)

    # ---- the end -----------------------------------------------------------------------------
    def succeed(self) -> None:
        """Record success and quit."""
        self.result["ok"] = True
        self.quit()

    def fail(self, message: str) -> None:
        """Record the failure (with a screenshot for diagnosis) and quit."""
        log(f"FAILED: {message}")
        self.result["error"] = message
        self.result["panel_log"] = self.panel_log()
        try:
            screenshot("failure.png")
        except Exception as exc:  # the failure itself matters more
            log(f"no failure screenshot: {exc}")
        self.quit()

    def quit(self) -> None:
        """Write result.json and close QGIS without a save prompt (killed if it hangs)."""
        if self.finished:
            return
        self.finished = True
        (WORK / "result.json").write_text(json.dumps(self.result, indent=2, default=str))
        log(f"result ok={self.result['ok']}")
        # QGIS should close by itself; one that hangs on exit is killed with a status of its own.
        # A daemon thread: Python's shutdown inside QGIS's exit waits for every other thread, so
        # an ordinary timer would itself hold QGIS open for its 30 s and then kill it.
        watchdog = threading.Timer(30, exit_hung)
        watchdog.daemon = True
        watchdog.start()
        QTimer.singleShot(200, iface.actionExit().trigger)
        QTimer.singleShot(1000, answer_save_prompt)


def main() -> Optional[GuiCheck]:
    """Start the check once QGIS's window is up; an overall timer ends it."""
    WORK.mkdir(parents=True, exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    check = GuiCheck()
    check.later(int(TIMEOUT_S * 1000), lambda: check.fail(f"timed out after {TIMEOUT_S:.0f} s"))
    check.later(2000, check.start)
    return check


GUI_CHECK = main()
