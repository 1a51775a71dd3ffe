"""The panel in the project file: what is recorded, and how a reopened project shows it again.

The project stores the pair, the tag layer (layer ids), the bands, tile size, output folder, the
model, the last probability map, polygons and suggestions (files) and the threshold
(:class:`kdmsi_qgis.settings.ProjectState`). While QGIS reads a project, its layers arrive one by
one and the layer pickers change with them; nothing is recorded then (:class:`ProjectReading`),
so a half-loaded panel never overwrites what the file holds. When the project is read, the panel
is shown again from it (:func:`restore`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QFileDialog, QWidget

from kdmsi_qgis.settings import ProjectState

MODEL_FILTER = "KD-MSI model (*.pt *.onnx)"


class ProjectReading:
    """Whether QGIS is reading a project's layers now (from ``QgsProject.layerLoaded``)."""

    def __init__(self, project: QgsProject) -> None:
        self.active = False
        self.project = project
        project.layerLoaded.connect(self._loaded)

    def _loaded(self, done: int, total: int) -> None:
        self.active = done < total

    def disconnect(self) -> None:
        """Stop following the project (the panel is being unloaded)."""
        try:
            self.project.layerLoaded.disconnect(self._loaded)
        except TypeError:
            pass


def record(ui: Any, state: ProjectState, project: QgsProject) -> None:
    """Copy the panel's pickers and parameters into ``state`` and write it into the project."""
    for name, combo in (("before", ui.before_combo), ("after", ui.after_combo),
                        ("tags", ui.tags_combo)):  # fmt: skip
        layer = combo.currentLayer()
        setattr(state, name, layer.id() if layer is not None else "")
    state.bands = ui.bands_edit.text().strip()
    state.tile = str(ui.tile_spin.value())
    state.out_dir = ui.out_dir.filePath()
    state.threshold = repr(ui.threshold.value())
    state.save(project)


def restore(ui: Any, project: QgsProject) -> ProjectState:
    """Show the project's state in the panel; return it.

    Parameters the project does not hold keep the user's settings. The threshold slider first
    takes the last probability map's range, then the project's threshold.
    """
    state = ProjectState.load(project)
    for combo, layer_id in ((ui.before_combo, state.before), (ui.after_combo, state.after),
                            (ui.tags_combo, state.tags)):  # fmt: skip
        combo.setLayer(project.mapLayer(layer_id) if layer_id else None)
    if state.bands:
        ui.bands_edit.setText(state.bands)
    if state.tile.isdigit():
        ui.tile_spin.setValue(int(state.tile))
    if state.out_dir:
        ui.out_dir.setFilePath(state.out_dir)
    probability = raster_layer_of(state.probability, project)
    if probability is not None:
        ui.threshold.follow_map(probability)
    if state.threshold:
        ui.threshold.set_value(float(state.threshold))
    return state


def raster_layer_of(path: str, project: QgsProject) -> Optional[QgsRasterLayer]:
    """The project's raster layer that reads the file ``path`` (None when there is none)."""
    for layer in project.mapLayers().values():
        if path and isinstance(layer, QgsRasterLayer) and Path(layer.source()) == Path(path):
            return layer
    return None


def ask_model_path(parent: QWidget, start: str) -> Optional[str]:
    """A file dialog for an existing model file; None when the user cancels."""
    path, _filter = QFileDialog.getOpenFileName(parent, "Open a KD-MSI model", start, MODEL_FILTER)
    return path or None


def model_problem(path: str) -> Optional[str]:
    """A sentence saying why ``path`` cannot be a model file, or None when it may be one."""
    file = Path(path)
    if not file.is_file():
        return f"The model file {file} does not exist; choose a model.pt written by Train."
    if file.suffix.lower() not in (".pt", ".onnx"):
        return (
            f"{file.name} is not a model file; choose a model.pt written by Train (or a .onnx "
            "file written by kdmsi export)."
        )
    return None
