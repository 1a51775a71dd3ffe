"""Adding the worker's outputs to the project, styled (main thread only)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from qgis.core import (
    QgsColorRampShader,
    QgsGradientColorRamp,
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

RESULTS_GROUP = "KD-MSI results"
TAG_LAYER_NAME = "tiles"


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
    """The suggestions GeoPackage of ``kdmsi suggest``, styled by reason (uncertain, disagrees)."""
    layer = QgsVectorLayer(str(path), name, "ogr")
    if layer.isValid():
        load_style(layer, "suggestions.qml")
    return layer


def probability_layer(path: Path, name: str = "KD-MSI change probability") -> QgsRasterLayer:
    """The probability GeoTIFF, styled with a transparent-to-red colour ramp over [0, 1]."""
    layer = QgsRasterLayer(str(path), name)
    if layer.isValid():
        style_probability(layer)
    return layer


def style_probability(layer: QgsRasterLayer) -> None:
    """Pseudocolour renderer on band 1, 0 see-through to 1 dark red."""
    ramp = QgsGradientColorRamp(QColor(255, 255, 178, 0), QColor(189, 0, 38, 255))
    shader_fn = QgsColorRampShader(0.0, 1.0, ramp, QgsColorRampShader.Interpolated)
    shader_fn.classifyColorRamp(5, 1)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    layer.setOpacity(0.8)
    layer.triggerRepaint()
