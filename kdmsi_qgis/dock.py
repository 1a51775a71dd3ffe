"""The KD-MSI panel: pair and parameters, tagging, train, detect, threshold, export, log."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayer,
    QgsProject,
    QgsTask,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget

from kdmsi_qgis import layers, panel_state
from kdmsi_qgis.dock_setup import SetupActions
from kdmsi_qgis.dock_ui import PanelWidgets, scrolling
from kdmsi_qgis.export import export_with_messages
from kdmsi_qgis.inputs import (
    file_of,
    rasters_to_preselect,
    same_raster,
    short_path,
    stamp,
    vector_layer_of,
)
from kdmsi_qgis.log_lines import log_line
from kdmsi_qgis.maptool import TagMapTool, TagStore
from kdmsi_qgis.panel_state import ProjectReading
from kdmsi_qgis.settings import Options, ProjectState, edge_rounds
from kdmsi_qgis.tasks import (
    DetectTask,
    GridTask,
    SuggestTask,
    TrainTask,
    VectorizeTask,
    WorkerTask,
)
from kdmsi_qgis.worker import chosen_python

SUGGEST_COUNT = 20
LOG_VISIBLE_PX = 160  # a started task scrolls the panel to its progress bar and log


class KdmsiDock(SetupActions, QgsDockWidget):
    """The panel; it starts tasks and keeps the project state up to date."""

    def __init__(self, iface: Any, parent: Any = None) -> None:
        super().__init__("KD-MSI change detection", parent)
        self.setObjectName("KdmsiDock")
        self.iface = iface
        self.ui = PanelWidgets()
        self.setWidget(scrolling(self.ui))
        self.task: Optional[QgsTask] = None
        self.store: Optional[TagStore] = None
        self.tool: Optional[TagMapTool] = None
        self.state = ProjectState()
        self.reading = ProjectReading(QgsProject.instance())
        self._restoring = False
        self.ui.show_options(Options.load())
        self._connect()
        self.restore_project()
        QgsProject.instance().layersAdded.connect(self.preselect_pair)

    # ---- settings and project state -------------------------------------------------------
    def options(self) -> Options:
        """The parameters shown, saved to QgsSettings."""
        options = self.ui.shown_options()
        options.save()
        return options

    def restore_project(self) -> None:
        """Show the layers, parameters, model and threshold stored in the current project."""
        self._restoring = True
        try:
            self.state = panel_state.restore(self.ui, QgsProject.instance())
        finally:
            self._restoring = False
        self.set_tag_layer(self.ui.tags_combo.currentLayer())
        self.show_model()
        self.preselect_pair()

    def show_model(self) -> None:
        """The model's run folder and file name (full path in the tooltip), and Resume's state.

        Resume is enabled while a canceled training's checkpoint is there to continue.
        """
        self.ui.model_label.setText(short_path(self.state.model) or "no model")
        self.ui.model_label.setToolTip(self.state.model)
        run = self.state.resumable
        self.ui.resume_button.setEnabled(bool(run) and (Path(run) / "checkpoint.pt").exists())
        self.ui.resume_button.setToolTip(f"Continue the canceled training in {run}" if run else "")

    def preselect_pair(self, *_args: Any) -> None:
        """Fill empty before/after pickers with the project's rasters, the earliest added first.

        Nothing is chosen while a project that names its pair is still loading its layers.
        """
        combos = (self.ui.before_combo, self.ui.after_combo)
        taken = {c.currentLayer().id() for c in combos if c.currentLayer() is not None}
        rasters = rasters_to_preselect(QgsProject.instance(), taken)
        for combo in combos:
            if combo.currentLayer() is None and rasters:
                combo.setLayer(rasters.pop(0))

    def save_project_state(self) -> None:
        """Store the panel's layers, parameters and files in the project.

        Nothing is stored while QGIS reads a project or the panel shows a read one: the pickers
        change then, and what the file holds must not be overwritten.
        """
        if self.reading.active or self._restoring:
            return
        panel_state.record(self.ui, self.state, QgsProject.instance())

    def _connect(self) -> None:
        """Wire the widgets."""
        ui = self.ui
        ui.grid_button.clicked.connect(self.create_grid)
        ui.tag_button.toggled.connect(self.set_tagging)
        ui.undo_button.clicked.connect(self.undo)
        ui.suggest_button.clicked.connect(self.suggest)
        ui.train_button.clicked.connect(lambda: self.train())
        ui.resume_button.clicked.connect(lambda: self.train(resume=True))
        ui.detect_button.clicked.connect(self.detect)
        ui.vectorize_button.clicked.connect(self.revectorize)
        ui.export_button.clicked.connect(lambda: self.export())
        ui.cancel_button.clicked.connect(self.cancel)
        ui.check_button.clicked.connect(self.check_worker)
        ui.diagnostics_button.clicked.connect(self.copy_diagnostics)
        ui.python_file.setFilePath(chosen_python())
        ui.python_file.fileChanged.connect(self.set_worker_python)
        ui.open_model_button.clicked.connect(lambda: self.open_model())
        ui.tags_combo.layerChanged.connect(self.set_tag_layer)
        for combo in (ui.before_combo, ui.after_combo, ui.tags_combo):
            combo.layerChanged.connect(lambda _layer: self.save_project_state())
        ui.threshold.slider.sliderReleased.connect(self.save_project_state)

    # ---- tagging --------------------------------------------------------------------------
    def set_tag_layer(self, layer: Optional[QgsMapLayer]) -> None:
        """Tag this layer from now on (None: no tagging)."""
        self.store = None
        if isinstance(layer, QgsVectorLayer) and layer.fields().indexFromName("label") >= 0:
            self.store = TagStore(layer)
            self.store.changed.connect(self.show_counts)
            if self.tool is not None:
                self.tool.set_store(self.store)
        elif self.ui.tag_button.isChecked():
            self.ui.tag_button.setChecked(False)
        self.show_counts()

    def show_counts(self) -> None:
        """Changed / unchanged / untagged tile counts."""
        if self.store is None:
            self.ui.counts_label.setText("no tag layer")
            return
        c = self.store.counts()
        self.ui.counts_label.setText(
            f"{c['changed']} changed, {c['unchanged']} unchanged, {c['untagged']} untagged"
        )

    def set_tagging(self, on: bool) -> None:
        """Switch the tagging map tool on or off."""
        canvas = self.iface.mapCanvas()
        if not on:
            if self.tool is not None and canvas.mapTool() is self.tool:
                canvas.unsetMapTool(self.tool)
            return
        if self.store is None:
            self.ui.tag_button.setChecked(False)
            self.message("Choose or create a tag layer first.", Qgis.Warning)
            return
        if self.tool is None:
            self.tool = TagMapTool(canvas, self.store)
            self.tool.deactivated.connect(lambda: self.ui.tag_button.setChecked(False))
        canvas.setMapTool(self.tool)

    def undo(self) -> None:
        """Undo the last tags."""
        if self.store is None or not self.store.undo():
            self.message("Nothing to undo.", Qgis.Info)

    # ---- running the worker ---------------------------------------------------------------
    def message(self, text: str, level: int = Qgis.Info) -> None:
        """A message-bar message and a log line."""
        self.iface.messageBar().pushMessage("KD-MSI", text, level, 8)
        self.ui.log_view.appendPlainText(text)

    def out_dir(self) -> Optional[Path]:
        """The output folder (created), or None with a message when not chosen."""
        text = self.options().out_dir
        if not text:
            project_dir = QgsProject.instance().absolutePath()
            text = str(Path(project_dir) / "kdmsi") if project_dir else ""
        if not text:
            self.message("Choose an output folder first.", Qgis.Warning)
            return None
        folder = Path(text)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def pair(self) -> Optional[dict[str, Any]]:
        """``before``, ``after`` and ``bands`` options, or None with a message."""
        before_layer = self.ui.before_combo.currentLayer()
        after_layer = self.ui.after_combo.currentLayer()
        before, after = file_of(before_layer), file_of(after_layer)
        if not before or not after:
            self.message("Choose the before and after rasters first.", Qgis.Warning)
            return None
        if same_raster(before_layer, after_layer):
            self.message(
                f"Before and after are the same raster ({before_layer.name()}); "
                "choose the image of each date.",
                Qgis.Warning,
            )
            return None
        self.save_project_state()
        return {"before": before, "after": after, "bands": self.options().bands or None}

    def start(self, task: WorkerTask) -> WorkerTask:
        """Run a task in QGIS's task manager, relaying its events to the panel."""
        if self.task is not None:
            self.message("A KD-MSI task is already running; wait or cancel it.", Qgis.Warning)
            return task
        self.task = task
        task.event_received.connect(self.on_event)
        task.done.connect(self.on_done)
        self.ui.progress.setValue(0)
        self.ui.progress.setFormat("%p%")
        self.ui.cancel_button.setEnabled(True)
        self.ui.log_view.appendPlainText(f"— {task.description()}")
        self.widget().ensureWidgetVisible(self.ui.progress, 0, LOG_VISIBLE_PX)
        QgsApplication.taskManager().addTask(task)
        return task

    def on_event(self, event: dict) -> None:
        """Show a worker event (main thread)."""
        kind = event.get("event")
        if kind == "progress":
            overall = event.get("overall", event.get("fraction", 0.0))
            self.ui.progress.setValue(round(100 * float(overall)))
            self.ui.progress.setFormat(f"{event.get('stage', '')} %p%  {event.get('message', '')}")
        if kind == "error" and self.task is not None and self.task.isCanceled():
            return  # the canceled run is reported in a sentence when it ends (on_done)
        line = log_line(event)
        if line is not None:
            self.ui.log_view.appendPlainText(line)

    def on_done(self, task: WorkerTask) -> None:
        """Main thread, after a task's ``finished``: remember its outputs."""
        self.task = None
        self.ui.cancel_button.setEnabled(False)
        if task.outcome.ok:
            task.apply_to(self)
        elif task.was_canceled:
            task.apply_canceled(self)
            self.ui.progress.setValue(0)
            self.ui.progress.setFormat("canceled")
            self.ui.log_view.appendPlainText(task.canceled_message())
        self.save_project_state()

    def cancel(self) -> None:
        """Cancel the running task (the worker gets SIGTERM; training keeps its checkpoint)."""
        if self.task is not None:
            self.ui.log_view.appendPlainText("canceling…")
            self.task.cancel()

    def create_grid(self) -> Optional[WorkerTask]:
        """``kdmsi grid`` into the output folder; the tag layer is added when done."""
        pair, folder = self.pair(), self.out_dir()
        if pair is None or folder is None:
            return None
        out = folder / f"tags_{stamp()}.gpkg"
        options = {**pair, "tile": self.options().tile, "out": out}
        return self.start(GridTask(options, self.iface))

    def train(self, resume: bool = False) -> Optional[WorkerTask]:
        """``kdmsi train`` from the tag layer into a new run folder (or the canceled one's)."""
        pair, folder = self.pair(), self.out_dir()
        tags = file_of(self.ui.tags_combo.currentLayer())
        if pair is None or folder is None:
            return None
        if not tags:
            self.message("Create or choose a tag layer and tag some tiles first.", Qgis.Warning)
            return None
        o = self.options()
        options = {
            **pair,
            "tags": tags,
            "out": Path(self.state.resumable) if resume else folder / f"run_{stamp()}",
            "backbone": o.backbone,
            "epochs": o.epochs,
            "affinity_rounds": edge_rounds(o.follow_edges),
            "device": o.device,
            "resume": resume,
        }
        return self.start(TrainTask(options, self.iface))

    def trained_model(self) -> Optional[str]:
        """The last model file, or None with a message when there is none."""
        if not self.state.model or not Path(self.state.model).exists():
            self.message("Train a model first (or its file was moved).", Qgis.Warning)
            return None
        return self.state.model

    def suggest(self) -> Optional[WorkerTask]:
        """``kdmsi suggest``: outline the tiles to tag next and the tags the model contradicts."""
        pair, folder = self.pair(), self.out_dir()
        if pair is None or folder is None:
            return None
        tags = file_of(self.ui.tags_combo.currentLayer())
        if not tags:
            self.message("Create or choose a tag layer first.", Qgis.Warning)
            return None
        model = self.trained_model()
        if model is None:
            return None
        options = {
            **pair,
            "model": model,
            "tags": tags,
            "out": folder / f"suggestions_{stamp()}.gpkg",
            "count": SUGGEST_COUNT,
            "device": self.options().device,
        }
        task = SuggestTask(
            options,
            self.iface,
            replace=layers.remover(self.state.suggestions),
        )
        return self.start(task)

    def detect(self) -> Optional[WorkerTask]:
        """``kdmsi detect`` with the last model, then ``kdmsi vectorize``."""
        pair, folder = self.pair(), self.out_dir()
        if pair is None or folder is None or self.trained_model() is None:
            return None
        name = f"changes_{stamp()}"
        detect = {
            **pair,
            "model": self.state.model,
            "out": folder / f"{name}.tif",
            "device": self.options().device,
        }
        vectorize = {"prob": detect["out"], "out": folder / f"{name}.gpkg", **self.polygon_rules()}
        return self.start(DetectTask(detect, vectorize, self.iface))

    def polygon_rules(self) -> dict[str, Any]:
        """The smallest polygon, and ``tags``: no polygon in tiles tagged unchanged."""
        tags = file_of(self.ui.tags_combo.currentLayer())
        return {"min_pixels": self.options().min_pixels, **({"tags": tags} if tags else {})}

    def revectorize(self) -> Optional[WorkerTask]:
        """``kdmsi vectorize`` of the last probability map at the slider's threshold."""
        prob = self.state.probability
        if not prob or not Path(prob).exists():
            self.message("Detect changes first.", Qgis.Warning)
            return None
        threshold = self.options().threshold
        out = Path(prob).with_name(f"{Path(prob).stem}_t{threshold:.3f}_{stamp()}.gpkg")
        task = VectorizeTask(
            {"prob": prob, "out": out, "threshold": threshold, **self.polygon_rules()},
            self.iface,
            replace=layers.remover(self.state.polygons),
        )
        return self.start(task)

    def polygons_layer(self) -> Optional[QgsVectorLayer]:
        """The project's layer of the last change polygons."""
        return vector_layer_of(self.state.polygons)

    def export(self, path: Optional[Path] = None) -> Optional[Path]:
        """Export the change polygons (asks for a file name when ``path`` is None)."""
        layer = self.polygons_layer()
        if layer is None:
            self.message("Detect changes first: there are no change polygons.", Qgis.Warning)
            return None
        return export_with_messages(layer, path, self, self.message)

    def unload(self) -> None:
        """Stop tagging and cancel a running task (the plugin is being unloaded)."""
        self.set_tagging(False)
        self.reading.disconnect()
        try:
            QgsProject.instance().layersAdded.disconnect(self.preselect_pair)
        except TypeError:
            pass
        if self.task is not None:
            self.task.cancel()
