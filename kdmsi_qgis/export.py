"""Export change polygons to Shapefile or GeoPackage, keeping the layer's CRS."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter, QgsVectorLayer

DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}
FILE_FILTER = "Shapefile (*.shp);;GeoPackage (*.gpkg)"


class ExportError(RuntimeError):
    """The layer could not be written."""


def export_polygons(layer: QgsVectorLayer, path: Path) -> Path:
    """Write every feature of ``layer`` to ``path`` (format from the suffix), CRS kept.

    Args:
        layer: the change polygons.
        path: ``.shp`` or ``.gpkg`` (an existing file is replaced).

    Returns:
        The written path.

    Raises:
        ExportError: on an unknown suffix or a write failure (the message says which file).
    """
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
