"""Export change polygons to Shapefile or GeoPackage, keeping the layer's CRS."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

from qgis.core import Qgis, QgsCoordinateTransformContext, QgsVectorFileWriter, QgsVectorLayer
from qgis.PyQt.QtWidgets import QFileDialog, QWidget

DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}
FILE_FILTER = "Shapefile (*.shp);;GeoPackage (*.gpkg)"


class ExportError(RuntimeError):
    """The layer could not be written."""


def check_exportable(layer: QgsVectorLayer) -> None:
    """Refuse a layer without change polygons (nothing would be worth writing).

    Raises:
        ExportError: when the layer has no feature.
    """
    if layer.featureCount() <= 0:
        raise ExportError(
            "There are no change polygons to export, so no file was written; lower the "
            "threshold and press Re-vectorize, or detect changes again."
        )


def with_filter_suffix(path: Path, name_filter: str) -> Path:
    """``path`` with the extension of the chosen file-type filter when it has none we know.

    Args:
        path: the name typed in the dialog.
        name_filter: the filter chosen there, e.g. ``"GeoPackage (*.gpkg)"``.

    Returns:
        ``changes`` + ``"Shapefile (*.shp)"`` -> ``changes.shp``; ``.shp`` or ``.gpkg`` names as
        they are.
    """
    path = Path(path)
    found = re.search(r"\*(\.\w+)", name_filter or "")
    if path.suffix.lower() in DRIVERS or found is None:
        return path
    return path.with_name(path.name + found.group(1))


def ask_export_path(parent: Optional[QWidget] = None) -> Optional[Path]:
    """Ask for the export file; a name typed without extension takes the chosen filter's.

    Returns:
        The path, or None when the dialog was closed.
    """
    dialog = QFileDialog(parent, "Export changes", "", FILE_FILTER)
    dialog.setObjectName("kdmsi_export_dialog")
    dialog.setAcceptMode(QFileDialog.AcceptSave)
    dialog.setFileMode(QFileDialog.AnyFile)
    try:
        if not dialog.exec_() or not dialog.selectedFiles():
            return None
        return with_filter_suffix(Path(dialog.selectedFiles()[0]), dialog.selectedNameFilter())
    finally:
        dialog.deleteLater()


def export_polygons(layer: QgsVectorLayer, path: Path) -> Path:
    """Write every feature of ``layer`` to ``path`` (format from the suffix), CRS kept.

    Args:
        layer: the change polygons.
        path: ``.shp`` or ``.gpkg`` (an existing file is replaced).

    Returns:
        The written path.

    Raises:
        ExportError: on an empty layer (nothing is written), an unknown suffix or a write
            failure (the message says which file).
    """
    check_exportable(layer)
    path = Path(path)
    driver = DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise ExportError(f"Cannot export to {path}: use a .shp or .gpkg name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = driver
    options.fileEncoding = "UTF-8"
    options.layerName = path.stem
    options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteFile
    result = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsCoordinateTransformContext(), options
    )
    error, message = result[0], result[1]
    if error != QgsVectorFileWriter.NoError:
        raise ExportError(f"Cannot write {path}: {message or error}.")
    return path


def export_with_messages(
    layer: QgsVectorLayer,
    path: Optional[Path],
    parent: QWidget,
    message: Callable[[str, int], None],
) -> Optional[Path]:
    """Export ``layer`` (asking for a file name when ``path`` is None), saying how it went.

    Returns:
        The file written, or None when the layer cannot be exported, the user cancels, or
        writing fails (each said in ``message``).
    """
    try:
        check_exportable(layer)
    except ExportError as exc:
        message(str(exc), Qgis.Warning)
        return None
    path = path or ask_export_path(parent)
    if path is None:
        return None
    try:
        written = export_polygons(layer, path)
    except ExportError as exc:
        message(str(exc), Qgis.Critical)
        return None
    message(f"Changes exported to {written}.", Qgis.Success)
    return written
