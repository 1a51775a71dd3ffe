"""The "KD-MSI" Processing provider (batch processing and the model builder)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from kdmsi_qgis.algorithms import (
    CreateTileGrid,
    DetectChanges,
    SuggestTiles,
    TrainFromTags,
    VectorizeChangeMap,
)
from kdmsi_qgis.paths import icon_path


class KdmsiProvider(QgsProcessingProvider):
    """Algorithms that run the KD-MSI worker."""

    def id(self) -> str:
        """Provider id (algorithm ids are ``kdmsi:<name>``)."""
        return "kdmsi"

    def name(self) -> str:
        """Name shown in the toolbox."""
        return "KD-MSI"

    def icon(self) -> QIcon:
        """Toolbox icon."""
        return QIcon(icon_path("icon"))

    def loadAlgorithms(self) -> None:
        """Register the algorithms."""
        for algorithm in (
            CreateTileGrid, TrainFromTags, SuggestTiles, DetectChanges, VectorizeChangeMap
        ):  # fmt: skip
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        """The worker writes GeoTIFF."""
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        """The worker writes GeoPackage or Shapefile."""
        return ["gpkg", "shp"]
