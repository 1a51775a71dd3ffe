"""What a change probability raster says about itself: its stored threshold and its value range.

``kdmsi detect`` stores the threshold it chose in the GeoTIFF metadata item ``kdmsi_threshold``
(core/io/probability.py reads it the same way on the worker's side). Main thread only.
"""

from __future__ import annotations

import math
from typing import Union

from osgeo import gdal
from qgis.core import QgsRasterBandStats, QgsRasterLayer

THRESHOLD_ITEM = "kdmsi_threshold"
DEFAULT_THRESHOLD = 0.5  # what the worker uses when the raster stores none
DEFAULT_RANGE = (0.0, 1.0)
STATS_SAMPLE_PIXELS = 1_000_000  # smaller rasters get exact statistics; larger ones a sample


def stored_threshold(source: Union[str, QgsRasterLayer]) -> float:
    """The threshold ``kdmsi detect`` stored in a probability raster, else 0.5.

    Args:
        source: the raster file, or a layer of it.

    Returns:
        The stored threshold; 0.5 when the file cannot be read or stores no number.
    """
    path = source.source() if isinstance(source, QgsRasterLayer) else str(source)
    try:
        dataset = gdal.OpenEx(path.split("|")[0], gdal.OF_RASTER)
        value = dataset.GetMetadataItem(THRESHOLD_ITEM) if dataset is not None else None
    except RuntimeError:  # GDAL raises when the host turned exceptions on
        value = None
    dataset = None
    try:
        threshold = float(value) if value is not None else DEFAULT_THRESHOLD
    except ValueError:
        return DEFAULT_THRESHOLD
    return threshold if math.isfinite(threshold) else DEFAULT_THRESHOLD


def value_range(layer: QgsRasterLayer, band: int = 1) -> tuple[float, float]:
    """The minimum and maximum of a raster band (nodata left out).

    Args:
        layer: a valid raster layer.
        band: the band number.

    Returns:
        ``(minimum, maximum)``; ``(0.0, 1.0)`` when the band has no valid pixel.
    """
    stats = layer.dataProvider().bandStatistics(
        band,
        QgsRasterBandStats.Min | QgsRasterBandStats.Max,
        layer.extent(),
        STATS_SAMPLE_PIXELS,
    )
    low, high = stats.minimumValue, stats.maximumValue
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        return DEFAULT_RANGE
    return float(low), float(high)
