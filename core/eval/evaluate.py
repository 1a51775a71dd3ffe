"""Scoring a change map against a pixel reference, window by window.

Pixels are ignored where the prediction is nodata, the label is nodata, or (with a partial
reference given as a changed-samples mask plus an unchanged-samples mask) outside both samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.eval.metrics import ConfusionMatrix
from core.io.rasters import open_raster, read_failure
from core.io.windows import Window, block_windows

BLOCK = 1024


def _read(ds: gdal.Dataset, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of a window and its validity (GDAL mask band > 0)."""
    band = ds.GetRasterBand(1)
    args = (window.col, window.row, window.width, window.height)
    try:
        return band.ReadAsArray(*args), band.GetMaskBand().ReadAsArray(*args) > 0
    except RuntimeError as exc:
        raise read_failure(ds.GetDescription(), "raster", exc) from exc


def _check_size(ds: gdal.Dataset, path: Path, width: int, height: int) -> None:
    """Raise when a reference raster is not the prediction's size."""
    if (ds.RasterXSize, ds.RasterYSize) != (width, height):
        raise KdmsiError(
            f"The label {path} is {ds.RasterXSize}x{ds.RasterYSize} but the prediction is "
            f"{width}x{height}; give the label of the same pair."
        )


def evaluate_map(
    pred: Path,
    label: Path,
    threshold: float,
    unchanged: Path | None = None,
    callbacks: Callbacks | None = None,
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of ``pred >= threshold`` against a reference.

    Args:
        pred: probability (or mask) raster.
        label: reference; > 0 is changed. With ``unchanged`` it is the changed-samples mask.
        threshold: change threshold on ``pred``.
        unchanged: optional unchanged-samples mask (> 0); turns ``label`` into a partial
            reference where only the two sample masks are scored.
        callbacks: progress and cancel.
    """
    callbacks = callbacks or Callbacks()
    ds_pred = open_raster(pred, "prediction")
    width, height = ds_pred.RasterXSize, ds_pred.RasterYSize
    ds_label = open_raster(label, "label")
    _check_size(ds_label, label, width, height)
    ds_unchanged = open_raster(unchanged, "unchanged-samples mask") if unchanged else None
    if ds_unchanged is not None:
        _check_size(ds_unchanged, unchanged, width, height)
    matrix = ConfusionMatrix()
    windows = block_windows(width, height, BLOCK)
    divisor = _divisor(ds_pred, windows)
    for i, window in enumerate(windows):
        callbacks.check_canceled()
        prob, valid = _read(ds_pred, window)
        truth, valid_label = _read(ds_label, window)
        valid &= valid_label
        truth = truth > 0
        if ds_unchanged is not None:
            negative = _read(ds_unchanged, window)[0] > 0
            valid &= truth | negative
        matrix.update(prob / divisor >= threshold, truth, valid)
        callbacks.progress((i + 1) / len(windows), "scoring")
    return matrix


def _divisor(ds: gdal.Dataset, windows: list[Window]) -> float:
    """255 for a Byte raster whose largest valid value is above 1 (0/255 masks), else 1.

    The scale is decided once for the whole raster from its valid pixels, so the nodata value
    255 of a 0/1 mask does not turn it into a 0/255 one, and every window uses the same scale.
    """
    if ds.GetRasterBand(1).DataType != gdal.GDT_Byte:
        return 1.0
    for window in windows:
        values, valid = _read(ds, window)
        if values[valid].max(initial=0) > 1:
            return 255.0
    return 1.0
