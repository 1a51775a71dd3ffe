"""Background tasks that run the worker and add its outputs to the project when done.

``run`` executes in a worker thread (no layer is touched there); ``finished`` runs on the main
thread and adds layers to the "KD-MSI results" group or pushes one message-bar error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsRasterLayer, QgsTask
from qgis.PyQt.QtCore import QTimer, pyqtSignal

from kdmsi_qgis import layers
from kdmsi_qgis.log_lines import DRAWN_NAMES, METHOD_NAMES
from kdmsi_qgis.worker import WorkerNotFound, WorkerOutcome, WorkerProcess, build_command

LOG_TAG = "KD-MSI"


def log_message(text: str, level: int = Qgis.Info) -> None:
    """Write a line to the "KD-MSI" tab of the QGIS log."""
    QgsMessageLog.logMessage(text, LOG_TAG, level)


class WorkerTask(QgsTask):
    """A task running one or more ``kdmsi`` subcommands in the worker.

    Signals:
        event_received: each worker event (a dict), delivered on the main thread.
        done: emitted on the main thread after ``finished`` (argument: the task).

    Args:
        description: shown in QGIS's task bar.
        steps: ``(command, options)`` pairs run in order; a failed step stops the run.
        iface: the QGIS interface for message-bar errors (None: log only).

    Class attributes, checked against the worker protocol (core/cli/protocol.json) by
    tests/plugin/test_worker_protocol.py:
        COMMANDS: the subcommands a task of this class may run.
        READS: the ``result`` outputs it reads.
        REMEMBERS: the outputs stored in the panel's project state (:meth:`apply_to`).
    """

    COMMANDS: tuple[str, ...] = ()
    READS: tuple[str, ...] = ()
    REMEMBERS: tuple[str, ...] = ()

    event_received = pyqtSignal(object)
    done = pyqtSignal(object)

    def __init__(
        self, description: str, steps: list[tuple[str, dict[str, Any]]], iface: Any = None
    ) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.steps = steps
        self.iface = iface
        self.outcomes: list[WorkerOutcome] = []
        self.project = QgsProject.instance()
        self.added: list = []
        self.worker: Optional[WorkerProcess] = None  # the step running now (tests, diagnostics)
        self._step = 0

    @property
    def outcome(self) -> WorkerOutcome:
        """The outcome of the last step that ran."""
        return self.outcomes[-1] if self.outcomes else WorkerOutcome(error="not run")

    @property
    def outputs(self) -> dict:
        """The outputs of every step, merged."""
        merged: dict = {}
        for outcome in self.outcomes:
            merged.update(outcome.outputs)
        return merged

    def run(self) -> bool:
        """Run the steps in the worker (background thread)."""
        for step, (command, options) in enumerate(self.steps):
            self._step = step
            try:
                argv = build_command(command, options)
            except WorkerNotFound as exc:
                self.outcomes.append(WorkerOutcome(error=str(exc)))
                return False
            self.worker = WorkerProcess(argv, self._on_event, self.isCanceled)
            outcome = self.worker.run()
            self.outcomes.append(outcome)
            if not outcome.ok:
                return False
        return True

    def _on_event(self, event: dict) -> None:
        """Progress to the task bar; every event to the panel.

        A progress event gets ``overall``: the fraction of the whole task (all its steps), which
        is what QGIS's task bar shows, so that the panel shows the same.
        """
        if event.get("event") == "progress":
            fraction = float(event.get("fraction", 0.0))
            overall = (self._step + fraction) / max(len(self.steps), 1)
            self.setProgress(100.0 * overall)
            event = {**event, "overall": overall}
        self.event_received.emit(event)

    def finished(self, result: bool) -> None:
        """Main thread: add the outputs, or report why there are none."""
        try:
            if result:
                self.on_success()
            elif self.was_canceled:
                self.on_canceled()
            else:
                self.report_error(self.outcome.error or "The worker failed.")
        finally:
            self.done.emit(self)

    def apply_to(self, panel: Any) -> None:
        """Main thread, after a successful run: remember the outputs in the panel's project state.

        Each output named in ``REMEMBERS`` goes to the ``ProjectState`` field of the same name;
        subclasses add what else the panel should show. This is the one place a task touches
        the panel, so a new command adds a task class and nothing in the panel.
        """
        for key in self.REMEMBERS:
            if key in self.outputs:
                setattr(panel.state, key, self.outputs[key])

    def apply_canceled(self, panel: Any) -> None:
        """Main thread, after a canceled run: what the panel should remember (overridden)."""

    def on_success(self) -> None:
        """Add the layers of a successful run (overridden)."""

    def on_canceled(self) -> None:
        """Tell the user the run was canceled, as information, not as a failure.

        The message is pushed once QGIS's own task notification is shown, so it is the one on top.
        """
        message = self.canceled_message()
        log_message(message, Qgis.Info)
        if self.iface is not None:
            bar = self.iface.messageBar()
            QTimer.singleShot(0, lambda: bar.pushMessage("KD-MSI", message, Qgis.Info, 10))

    def canceled_message(self) -> str:
        """A sentence saying the run was canceled and what was kept (overridden)."""
        name = self.description().replace("KD-MSI: ", "")
        return (
            f'The run "{name}" was canceled; files it had not finished were removed, and the '
            "layers already in the project were kept."
        )

    @property
    def was_canceled(self) -> bool:
        """The run was canceled (by the user, or the worker exited with the canceled status)."""
        return self.outcome.canceled or self.isCanceled()

    def report_error(self, message: str) -> None:
        """One clear message-bar error; details go to the log."""
        for line in self.outcome.logs:
            log_message(line, Qgis.Info)
        log_message(message, Qgis.Critical)
        self.notify(message, Qgis.Critical)

    def notify(self, message: str, level: int) -> None:
        """Push a message to the message bar (or the log without an interface)."""
        if self.iface is not None:
            self.iface.messageBar().pushMessage("KD-MSI", message, level, 10)
        else:
            log_message(message, level)

    def add(self, layer: Any) -> None:
        """Add a valid layer to the results group, or report it as unreadable."""
        if layer.isValid():
            layers.add_to_results(layer, self.project)
            self.added.append(layer)
        else:
            self.report_error(f"QGIS cannot open {layer.source()}; see the KD-MSI log.")


class GridTask(WorkerTask):
    """``kdmsi grid``: a tag layer over the pair, added styled by label."""

    COMMANDS = ("grid",)
    READS = ("tags",)

    def __init__(self, options: dict[str, Any], iface: Any = None) -> None:
        super().__init__("KD-MSI: create tile grid", [("grid", options)], iface)
        self.tag_layer = None

    def on_success(self) -> None:
        """Add the tag layer at the top of the layer tree (outside the results group)."""
        path = Path(self.outputs["tags"])
        layer = layers.tag_layer(path)
        if not layer.isValid():
            self.report_error(f"QGIS cannot open the tag layer {path}.")
            return
        self.project.addMapLayer(layer)
        self.tag_layer = layer
        self.added.append(layer)

    def apply_to(self, panel: Any) -> None:
        """Select the new tag layer in the panel."""
        if self.tag_layer is not None:
            panel.ui.tags_combo.setLayer(self.tag_layer)


class TrainTask(WorkerTask):
    """``kdmsi train`` from the pair and the tag layer; the model path ends up in ``model``."""

    COMMANDS = ("train",)
    READS = ("model",)

    def __init__(self, options: dict[str, Any], iface: Any = None) -> None:
        super().__init__("KD-MSI: train", [("train", options)], iface)
        self.run_dir = Path(options["out"])
        self.model: Optional[Path] = None

    def on_success(self) -> None:
        """Remember the model and say where it is, and which map detect will draw."""
        self.model = Path(self.outputs["model"])
        metrics = self.outcome.metrics
        if not metrics.get("reliable", True):
            self.notify(
                f"Model trained ({self.model}), but the map Detect draws does not tell the "
                "held-out changed tiles from the unchanged ones better than chance: tag more "
                "tiles (Suggest "
                "shows which) and train again. The log says how many.",
                Qgis.Warning,
            )
        elif str(metrics.get("leader")) in METHOD_NAMES:  # another map ranked the tags better
            name = METHOD_NAMES[str(metrics["leader"])]
            drawn = DRAWN_NAMES.get(str(metrics.get("method")), "the combined map")
            self.notify(
                f"Model trained: {self.model}. On your held-out tags {name} ranked the tiles "
                "better than the trained network combined with the colour difference; Detect "
                f"still draws {drawn}, since such a lead on a few tags did not carry over "
                "to the change pixels in our tests. The Processing tool 'Detect changes' can "
                "draw the other map to compare.",
                Qgis.Info,
            )
        else:
            self.notify(f"Model trained: {self.model}", Qgis.Success)

    def canceled_message(self) -> str:
        """Say whether the checkpoint was kept, and where."""
        checkpoint = self.run_dir / "checkpoint.pt"
        if checkpoint.exists():
            return (
                f"Training was canceled; its checkpoint was kept in {checkpoint}, and the "
                "panel's model was not changed. Resume continues it."
            )
        return (
            "Training was canceled before its first checkpoint; the panel's model was not changed."
        )

    def apply_to(self, panel: Any) -> None:
        """Make the new model the panel's model; drop the finished run's checkpoint."""
        if self.model is not None:
            panel.state.model = str(self.model)
            panel.state.resumable = ""
            panel.show_model()
        checkpoint = self.run_dir / "checkpoint.pt"
        if checkpoint.exists():
            size = checkpoint.stat().st_size / 2**20
            checkpoint.unlink()
            panel.ui.log_view.appendPlainText(
                f"The finished run's checkpoint ({size:.0f} MB) was deleted; its model.pt holds "
                "the result."
            )

    def apply_canceled(self, panel: Any) -> None:
        """A checkpoint kept: the panel offers to resume this run."""
        if (self.run_dir / "checkpoint.pt").exists():
            panel.state.resumable = str(self.run_dir)
            panel.show_model()


class DetectTask(WorkerTask):
    """``kdmsi detect`` then ``kdmsi vectorize``; adds the probability raster and polygons."""

    COMMANDS = ("detect", "vectorize")
    READS = ("probability", "polygons")
    REMEMBERS = ("probability", "polygons")

    def __init__(
        self, detect: dict[str, Any], vectorize: Optional[dict[str, Any]], iface: Any = None
    ) -> None:
        steps = [("detect", detect)] + ([("vectorize", vectorize)] if vectorize else [])
        super().__init__("KD-MSI: detect changes", steps, iface)
        self.probability: Optional[QgsRasterLayer] = None

    def on_success(self) -> None:
        """Add the probability raster and the change polygons to the results group."""
        outputs = self.outputs
        probability = layers.probability_layer(Path(outputs["probability"]))
        self.add(probability)
        if probability.isValid():
            self.probability = probability
        if "polygons" in outputs:
            self.add(layers.polygons_layer(Path(outputs["polygons"])))

    def apply_to(self, panel: Any) -> None:
        """Remember the outputs; the threshold slider takes the new map's range and threshold."""
        super().apply_to(panel)
        if self.probability is not None:
            panel.ui.threshold.follow_map(self.probability)


class VectorizeTask(WorkerTask):
    """``kdmsi vectorize`` of an existing probability map (no model run)."""

    COMMANDS = ("vectorize",)
    READS = ("polygons",)
    REMEMBERS = ("polygons",)

    def __init__(
        self,
        options: dict[str, Any],
        iface: Any = None,
        replace: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__("KD-MSI: vectorize", [("vectorize", options)], iface)
        self.replace = replace

    @property
    def empty(self) -> bool:
        """The worker found no polygon at this threshold."""
        return int(self.outcome.metrics.get("count", 1)) == 0

    def empty_message(self) -> str:
        """The sentence for a threshold that gives no polygon."""
        threshold = float(self.outcome.metrics.get("threshold", 0.0))
        return (
            f"The threshold {threshold:.3f} gives no change polygons, so the previous change "
            "polygons were kept; choose a lower threshold and press Re-vectorize again."
        )

    def on_success(self) -> None:
        """Drop the previous polygons (``replace``) and add the new ones, unless there are none."""
        if self.empty:
            log_message(self.empty_message(), Qgis.Warning)
            if self.iface is not None:
                self.iface.messageBar().pushMessage(
                    "KD-MSI", self.empty_message(), Qgis.Warning, 10
                )
            return
        if self.replace is not None:
            self.replace()
        self.add(layers.polygons_layer(Path(self.outputs["polygons"])))

    def apply_to(self, panel: Any) -> None:
        """Remember the new polygons; with none, keep the previous ones and say why in the log."""
        if self.empty:
            panel.ui.log_view.appendPlainText(self.empty_message())
            return
        super().apply_to(panel)


class SuggestTask(WorkerTask):
    """``kdmsi suggest``: tiles to tag next and tags the model disagrees with, added styled."""

    COMMANDS = ("suggest",)
    READS = ("suggestions",)
    REMEMBERS = ("suggestions",)

    def __init__(
        self,
        options: dict[str, Any],
        iface: Any = None,
        replace: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__("KD-MSI: suggest tiles", [("suggest", options)], iface)
        self.replace = replace
        self.layer = None

    def on_success(self) -> None:
        """Drop the previous suggestions (``replace``), add the new ones and say how many."""
        if self.replace is not None:
            self.replace()
        layer = layers.suggestions_layer(Path(self.outputs["suggestions"]))
        self.add(layer)
        if not layer.isValid():
            return
        self.layer = layer
        metrics = self.outcome.metrics
        self.notify(
            f"{metrics.get('most_change', 0)} tiles to tag next (orange ?), "
            f"{metrics.get('disagrees', 0)} tags the model contradicts (blue !).",
            Qgis.Info,
        )
