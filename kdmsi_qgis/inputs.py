"""The panel's inputs: files behind layers, the rasters to preselect, output names."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from qgis.core import QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer

from kdmsi_qgis.settings import ProjectState


def file_of(layer: Optional[QgsMapLayer]) -> str:
    """The file behind a layer (its source without ``|layername=...``)."""
    return layer.source().split("|")[0] if layer is not None else ""


def stamp() -> str:
    """A time stamp for output names, to the millisecond: two clicks in one second differ.

    Example: ``20261129_070647_123``.
    """
    now = time.time()
    return time.strftime("%Y%m%d_%H%M%S", time.localtime(now)) + f"_{int(now * 1000) % 1000:03d}"


def short_path(path: str) -> str:
    """A file's folder and name only (``run_1/model.pt``), short enough for a narrow panel."""
    if not path:
        return ""
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else path


def same_raster(before: QgsMapLayer, after: QgsMapLayer) -> bool:
    """Whether two layers are the same layer or read the same file."""
    return before.id() == after.id() or Path(file_of(before)) == Path(file_of(after))


def rasters_to_preselect(project: QgsProject, taken: set[str]) -> list[QgsRasterLayer]:
    """Raster layers for empty before/after pickers, best first; none in ``taken`` (ids).

    The pair the project names comes first; then the other rasters, the earliest added (lowest
    in the layer tree) first, and layers not in the tree yet (just added) last. Empty while the
    project names a layer that is not loaded (a project being read), so nothing is guessed then.
    """
    stored = ProjectState.load(project)
    named = [project.mapLayer(i) for i in (stored.before, stored.after) if i]
    if any(layer is None for layer in named):
        return []
    in_tree = [node.layer() for node in reversed(project.layerTreeRoot().findLayers())]
    not_yet = [layer for layer in project.mapLayers().values() if layer not in in_tree]
    found: list[QgsRasterLayer] = []
    for layer in named + in_tree + not_yet:
        if isinstance(layer, QgsRasterLayer) and layer.id() not in taken and layer not in found:
            found.append(layer)
    return found


def vector_layer_of(path: str, project: Optional[QgsProject] = None) -> Optional[QgsVectorLayer]:
    """The project's vector layer that reads the file ``path`` (None when there is none)."""
    for layer in (project or QgsProject.instance()).mapLayers().values():
        if path and isinstance(layer, QgsVectorLayer) and file_of(layer) == path:
            return layer
    return None
