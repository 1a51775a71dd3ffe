"""The tagging map tool: click or drag over tiles to tag them; every tag is on disk at once.

Left click tags *changed* (1), right click *unchanged* (0), Shift+click clears (NULL); dragging a
rectangle tags every tile it touches. Ctrl+Z (or the panel's Undo) restores the previous labels.
Tags go straight to the GeoPackage through the layer's data provider, so no tag is lost if QGIS
stops, and no edit session is needed.
"""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import (
    NULL,
    QgsFeatureRequest,
    QgsGeometry,
    QgsPointXY,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import QObject, QPoint, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

LABEL_FIELD = "label"
CHANGED, UNCHANGED = 1, 0
DRAG_PIXELS = 5
UNDO_DEPTH = 200


class TagStore(QObject):
    """Writes labels of a tag layer straight to its file, with an undo stack.

    Signals:
        changed: emitted after labels were written or undone.

    Args:
        layer: the ``tiles`` layer of a tag GeoPackage.
    """

    changed = pyqtSignal()

    def __init__(self, layer: QgsVectorLayer) -> None:
        super().__init__()
        self.layer = layer
        self.field = layer.fields().indexFromName(LABEL_FIELD)
        if self.field < 0:
            raise ValueError(f"{layer.name()} has no '{LABEL_FIELD}' field; not a tag layer.")
        self.undo_stack: list[list[tuple[int, Any]]] = []

    def labels(self, fids: Optional[list[int]] = None) -> dict[int, Optional[int]]:
        """Current labels by feature id (None for untagged), read from the provider."""
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
        request.setSubsetOfAttributes([self.field])
        if fids is not None:
            request.setFilterFids(list(fids))
        out = {}
        for feature in self.layer.dataProvider().getFeatures(request):
            value = feature.attribute(self.field)
            out[feature.id()] = None if value in (None, NULL) else int(value)
        return out

    def counts(self) -> dict[str, int]:
        """Numbers of changed, unchanged and untagged tiles."""
        values = list(self.labels().values())
        return {
            "changed": values.count(CHANGED),
            "unchanged": values.count(UNCHANGED),
            "untagged": values.count(None),
        }

    def set_label(self, fids: list[int], label: Optional[int]) -> int:
        """Write ``label`` (1, 0 or None) to the tiles; returns how many changed."""
        old = {fid: value for fid, value in self.labels(fids).items() if value != label}
        if not old:
            return 0
        if not self._write({fid: label for fid in old}):
            return 0
        self.undo_stack.append(list(old.items()))
        del self.undo_stack[:-UNDO_DEPTH]
        return len(old)

    def undo(self) -> bool:
        """Restore the labels changed by the last ``set_label``; False when nothing to undo."""
        if not self.undo_stack:
            return False
        return self._write(dict(self.undo_stack.pop()))

    def _write(self, labels: dict[int, Optional[int]]) -> bool:
        """Change the attribute in the file and refresh the map."""
        changes = {
            fid: {self.field: NULL if value is None else int(value)}
            for fid, value in labels.items()
        }
        ok = self.layer.dataProvider().changeAttributeValues(changes)
        if ok:
            self.layer.triggerRepaint()
            self.changed.emit()
        return ok

    def tiles_in(self, rect: QgsRectangle) -> list[int]:
        """Ids of the tiles that intersect a rectangle (layer coordinates)."""
        return self._matching(rect, QgsGeometry.fromRect(rect))

    def tiles_at(self, point: QgsPointXY) -> list[int]:
        """Ids of the tiles that contain a point (layer coordinates)."""
        return self._matching(QgsRectangle(point, point), QgsGeometry.fromPointXY(point))

    def _matching(self, rect: QgsRectangle, geometry: QgsGeometry) -> list[int]:
        """Feature ids whose geometry intersects ``geometry`` (prefiltered by ``rect``)."""
        request = QgsFeatureRequest().setFilterRect(rect).setNoAttributes()
        return [
            f.id()
            for f in self.layer.dataProvider().getFeatures(request)
            if f.geometry().intersects(geometry)
        ]


class TagMapTool(QgsMapTool):
    """Tag tiles of a :class:`TagStore` by clicking or dragging on the canvas.

    Signals:
        tagged: number of tiles whose label changed.
    """

    tagged = pyqtSignal(int)

    def __init__(self, canvas: QgsMapCanvas, store: TagStore) -> None:
        super().__init__(canvas)
        self.store = store
        self._press: Optional[QPoint] = None
        self._band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self._band.setColor(QColor(255, 200, 0, 80))
        self._band.setStrokeColor(QColor(255, 160, 0))
        self._band.setWidth(1)
        self.setCursor(Qt.CrossCursor)

    def set_store(self, store: TagStore) -> None:
        """Tag another layer."""
        self.store = store

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:
        """Remember where a click or drag starts."""
        self._press = event.pos()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:
        """Show the drag rectangle."""
        if self._press is None or not self._is_drag(event.pos()):
            return
        rect = QgsRectangle(self.toMapCoordinates(self._press), event.mapPoint())
        self._band.setToGeometry(QgsGeometry.fromRect(rect), None)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:
        """Tag the tile under the cursor, or every tile in the dragged rectangle."""
        press, self._press = self._press, None
        self._band.reset(QgsWkbTypes.PolygonGeometry)
        label = label_for(event.button(), event.modifiers())
        if label is False:
            return
        layer = self.store.layer
        if press is not None and self._is_drag(event.pos(), press):
            rect = QgsRectangle(self.toMapCoordinates(press), event.mapPoint())
            fids = self.store.tiles_in(self.toLayerCoordinates(layer, rect))
        else:
            fids = self.store.tiles_at(self.toLayerCoordinates(layer, event.mapPoint()))
        self.tagged.emit(self.store.set_label(fids, label))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Ctrl+Z undoes the last tags."""
        if event.key() == Qt.Key_Z and event.modifiers() & Qt.ControlModifier:
            self.store.undo()
            event.accept()
        else:
            event.ignore()

    def deactivate(self) -> None:
        """Drop a half-made drag when another tool is chosen."""
        self._press = None
        self._band.reset(QgsWkbTypes.PolygonGeometry)
        super().deactivate()

    def _is_drag(self, pos: QPoint, start: Optional[QPoint] = None) -> bool:
        """Whether the mouse moved far enough from the press to be a drag."""
        start = start if start is not None else self._press
        if start is None:
            return False
        return (pos - start).manhattanLength() >= DRAG_PIXELS


def label_for(button: int, modifiers: int) -> Any:
    """The label a mouse button sets: 1, 0, None (clear), or False (ignore)."""
    if modifiers & Qt.ShiftModifier:
        return None
    if button == Qt.LeftButton:
        return CHANGED
    if button == Qt.RightButton:
        return UNCHANGED
    return False
