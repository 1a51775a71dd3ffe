"""Reading the metadata that ``kdmsi detect`` stores in its probability rasters."""

from __future__ import annotations

from pathlib import Path

from core.errors import KdmsiError
from core.io.rasters import open_raster

DEFAULT_THRESHOLD = 0.5


def stored_threshold(path: Path) -> float:
    """The change threshold recorded in a probability raster (``kdmsi_threshold``), else 0.5.

    Raises:
        KdmsiError: when the raster cannot be read or the stored value is not a number.
    """
    value = open_raster(path, "probability raster").GetMetadataItem("kdmsi_threshold")
    if value is None:
        return DEFAULT_THRESHOLD
    try:
        return float(value)
    except ValueError as exc:
        raise KdmsiError(
            f"The probability raster {path} stores a threshold {value!r} that is not a number; "
            "pass --threshold."
        ) from exc
