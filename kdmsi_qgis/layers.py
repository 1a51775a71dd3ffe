"""Adding the worker's outputs to the project, styled (main thread only)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qgis.core import (
    QgsColorRampShader,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from kdmsi_qgis.paths import resource
from kdmsi_qgis.probability import stored_threshold, value_range

RESULTS_GROUP = "KD-MSI results"
TAG_LAYER_NAME = "tiles"
RAMP_STEP = 1e-3  # the width of the colour step that marks the threshold
BELOW_COLORS = (QColor(160, 160, 160, 0), QColor(160, 160, 160, 90))
ABOVE_COLORS = (QColor(255, 237, 160, 255), QColor(189, 0, 38, 255))


def results_group(project: Optional[QgsProject] = None) -> QgsLayerTreeGroup:
    """The "KD-MSI results" group of the layer tree (created at the top when missing)."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    group = root.findGroup(RESULTS_GROUP)
    return group if group is not None else root.insertGroup(0, RESULTS_GROUP)


def add_to_results(layer: QgsMapLayer, project: Optional[QgsProject] = None) -> QgsMapLayer:
    """Add a layer to the project inside the results group."""
    project = project or QgsProject.instance()
    project.addMapLayer(layer, False)
    results_group(project).insertLayer(0, layer)
    return layer


def remove_layers_from(path: Path, project: Optional[QgsProject] = None) -> None:
    """Remove every layer whose source is the file ``path`` (before it is rewritten)."""
    project = project or QgsProject.instance()
    target = str(Path(path).resolve())
    for layer in list(project.mapLayers().values()):
        source = layer.source().split("|")[0]
        if source and Path(source).resolve() == Path(target):
            project.removeMapLayer(layer.id())


def remover(path: str) -> Callable[[], None]:
    """A function that removes the layers of the file ``path`` (nothing when ``path`` is empty)."""

    def remove() -> None:
        if path:
            remove_layers_from(Path(path))

    return remove


def load_style(layer: QgsMapLayer, qml: str) -> None:
    """Apply a QML style from ``resources`` (ignored when the file is missing)."""
    path = resource(qml)
    if path.exists():
        layer.loadNamedStyle(str(path))
        layer.triggerRepaint()


def tag_layer(path: Path, name: str = "KD-MSI tags") -> QgsVectorLayer:
    """The tag GeoPackage's ``tiles`` layer, styled by label (not added to a project)."""
    layer = QgsVectorLayer(f"{path}|layername={TAG_LAYER_NAME}", name, "ogr")
    if layer.isValid():
        load_style(layer, "tags.qml")
    return layer


def polygons_layer(path: Path, name: str = "KD-MSI changes") -> QgsVectorLayer:
    """A change polygon file, styled."""
    layer = QgsVectorLayer(str(path), name, "ogr")
    if layer.isValid():
        load_style(layer, "changes.qml")
    return layer


def suggestions_layer(path: Path, name: str = "KD-MSI suggested tiles") -> QgsVectorLayer:
    """The suggestions GeoPackage of ``kdmsi suggest``, styled by reason (most_change, disagrees).

    Files written before session 22 name their tiles to tag ``uncertain``; they are styled alike.
    """
    layer = QgsVectorLayer(str(path), name, "ogr")
    if layer.isValid():
        load_style(layer, "suggestions.qml")
    return layer


def probability_layer(path: Path, name: str = "KD-MSI change probability") -> QgsRasterLayer:
    """The probability GeoTIFF, styled over its own values with its threshold marked."""
    layer = QgsRasterLayer(str(path), name)
    if layer.isValid():
        style_probability(layer)
    return layer


def probability_ramp(low: float, threshold: float, high: float) -> list:
    """Colour ramp items: see-through grey below the threshold, yellow to dark red from it up.

    The step at the threshold marks it on the map; the ramp ends at the raster's own maximum, so
    a map whose values stop at 0.26 still shows its strongest changes in dark red.
    """
    item = QgsColorRampShader.ColorRampItem
    items = []
    below = threshold - RAMP_STEP
    if below > low:
        items += [item(low, BELOW_COLORS[0], f"{low:.3f}"), item(below, BELOW_COLORS[1], "")]
    elif threshold > low:
        items.append(item(low, BELOW_COLORS[1], f"{low:.3f}"))
    items.append(item(threshold, ABOVE_COLORS[0], f"threshold {threshold:.3f}"))
    top = max(high, threshold + RAMP_STEP)
    items.append(item(top, ABOVE_COLORS[1], f"{top:.3f}"))
    return items


def style_probability(layer: QgsRasterLayer, threshold: Optional[float] = None) -> None:
    """Pseudocolour renderer on band 1 stretched to the raster's minimum..maximum.

    Args:
        layer: a valid probability raster layer.
        threshold: the change threshold to mark (default: the one stored in the raster).
    """
    low, high = value_range(layer)
    threshold = stored_threshold(layer) if threshold is None else threshold
    items = probability_ramp(low, threshold, high)
    shader_fn = QgsColorRampShader(items[0].value, items[-1].value)
    shader_fn.setColorRampType(QgsColorRampShader.Interpolated)
    shader_fn.setColorRampItemList(items)
    shader_fn.setClip(False)  # values outside the range take the end colours
    shader = QgsRasterShader(items[0].value, items[-1].value)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.setRenderer(renderer)
    layer.setOpacity(0.8)
    layer.triggerRepaint()
