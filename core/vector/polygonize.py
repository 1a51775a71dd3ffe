"""The raster side of :func:`core.vector.vectorize.vectorize`: read, threshold, polygonize, measure.

The probability raster is read chunk by chunk (rows of a few million pixels); the change mask is a
temporary Byte GeoTIFF that GDAL Polygonize turns into an in-memory layer; the kept polygons'
ids are rasterized back onto the grid and their mean and maximum probability gathered with
``numpy.bincount``. See :mod:`core.vector.vectorize` for the value scale rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal, ogr, osr

from core.callbacks import Callbacks
from core.errors import Canceled, KdmsiError
from core.io.rasters import grid_of
from core.vector.tag_rules import TagRules

_TARGET_CHUNK_PIXELS = 1 << 22
_TEMP_TIFF = ("COMPRESS=DEFLATE", "ZLEVEL=1")


@dataclass
class Source:
    """The opened probability raster and how to read it."""

    dataset: gdal.Dataset
    band: gdal.Band
    divisor: float
    srs: osr.SpatialReference | None
    width: int
    height: int

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in map units squared (1 without georeferencing)."""
        gt = self.dataset.GetGeoTransform()
        return abs(gt[1] * gt[5] - gt[2] * gt[4]) or 1.0

    def is_binary_mask(self, threshold: float) -> bool:
        """True for a georeferenced, all-valid 0/1 Byte band cut at a threshold in (0, 1].

        Such a band is its own change mask and every change pixel has the value 1, so it needs
        no thresholding pass and no per-polygon statistics.
        """
        return (
            self.band.DataType == gdal.GDT_Byte
            and self.divisor == 1.0
            and 0.0 < threshold <= 1.0
            and self.band.GetMaskFlags() == gdal.GMF_ALL_VALID
            and grid_of(self.dataset).georeferenced
        )

    def read(self, row: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(values / divisor as float64, valid)`` for ``rows`` full rows from ``row``."""
        values = self.band.ReadAsArray(0, row, self.width, rows).astype(np.float64)
        values /= self.divisor
        valid = np.isfinite(values)
        if self.band.GetMaskFlags() != gdal.GMF_ALL_VALID:
            valid &= self.band.GetMaskBand().ReadAsArray(0, row, self.width, rows) > 0
        return values, valid


def open_source(prob_path: Path) -> Source:
    """Open the raster, pick the value scale and the CRS (traditional x/y axis order)."""
    try:
        dataset = gdal.Open(str(prob_path))
    except RuntimeError as exc:
        raise KdmsiError(f"Cannot open {prob_path}; give a GDAL-readable raster.") from exc
    if dataset is None or dataset.RasterCount < 1:
        raise KdmsiError(f"{prob_path} has no raster band; give a single band raster.")
    band = dataset.GetRasterBand(1)
    divisor = 1.0
    if band.DataType == gdal.GDT_Byte:
        try:
            if band.ComputeRasterMinMax(False)[1] > 1:
                divisor = 255.0
        except RuntimeError:  # no valid pixel at all
            pass
    srs = dataset.GetSpatialRef()
    if srs is not None:
        srs = srs.Clone()
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return Source(dataset, band, divisor, srs, dataset.RasterXSize, dataset.RasterYSize)


def row_chunks(source: Source) -> list[tuple[int, int]]:
    """Split the rows into ``(first_row, row_count)`` chunks of a few million pixels."""
    block_rows = max(1, source.band.GetBlockSize()[1])
    rows = max(1, _TARGET_CHUNK_PIXELS // max(1, source.width))
    if rows >= block_rows:
        rows -= rows % block_rows
    return [(row, min(rows, source.height - row)) for row in range(0, source.height, rows)]


def temp_raster(source: Source, path: Path, data_type: int) -> gdal.Dataset:
    """Create a one band GeoTIFF on the source grid (no CRS) filled with zeros."""
    driver = gdal.GetDriverByName("GTiff")
    raster = driver.Create(str(path), source.width, source.height, 1, data_type, _TEMP_TIFF)
    raster.SetGeoTransform(grid_of(source.dataset).display_transform)
    return raster


def threshold_mask(
    source: Source,
    threshold: float,
    path: Path,
    callbacks: Callbacks,
    rules: TagRules | None = None,
) -> gdal.Dataset:
    """Write the 0/1 change mask of ``source`` to a temporary GeoTIFF, chunk by chunk.

    ``rules`` (the user's tags) clear the tiles tagged unchanged and count what is left in the
    tiles tagged changed.
    """
    mask = temp_raster(source, path, gdal.GDT_Byte)
    band = mask.GetRasterBand(1)
    chunks = row_chunks(source)
    for index, (row, rows) in enumerate(chunks):
        callbacks.check_canceled()
        values, valid = source.read(row, rows)
        change = (valid & (values >= threshold)).astype(np.uint8)
        if rules is not None:
            rules.apply(change, row)
        band.WriteArray(change, 0, row)
        callbacks.progress(0.2 * (index + 1) / len(chunks), "thresholding")
    band.FlushCache()
    return mask


def run_gdal(
    callbacks: Callbacks,
    stage: tuple[float, float, str],
    function: Callable[..., object],
    *args: object,
    **kwargs: object,
) -> None:
    """Call GDAL with progress mapped onto ``stage`` (start, end, message); cancel stops it."""
    start, end, message = stage

    def report(complete: float, _message: str, _data: object) -> int:
        if callbacks.is_canceled():
            return 0
        callbacks.progress(start + (end - start) * min(max(complete, 0.0), 1.0), message)
        return 1

    try:
        function(*args, callback=report, **kwargs)
    except RuntimeError as exc:
        if callbacks.is_canceled():
            raise Canceled("vectorizing canceled by the user") from exc
        raise


def polygonize(
    mask: gdal.Dataset, source: Source, connectivity: int, callbacks: Callbacks
) -> tuple[gdal.Dataset, ogr.Layer]:
    """Polygonize the change pixels of ``mask`` into the in-memory layer ``polygons``."""
    memory = gdal.GetDriverByName("Memory").Create("polygons", 0, 0, 0, gdal.GDT_Unknown)
    srs = source.srs
    if srs is None:  # a local CRS keeps RasterizeLayer from warning about a missing one
        srs = osr.SpatialReference()
        srs.SetLocalCS("pixels")
    layer = memory.CreateLayer("polygons", srs, ogr.wkbPolygon)
    band = mask.GetRasterBand(1)
    options = ["8CONNECTED=8"] if connectivity == 8 else []
    stage = (0.2, 0.5, "polygonizing")
    run_gdal(callbacks, stage, gdal.Polygonize, band, band, layer, -1, options)
    return memory, layer


def numbered(memory: gdal.Dataset, min_area: float) -> ogr.Layer:
    """Return an SQL view of the polygons of at least ``min_area`` with ``pid`` = FID + 1.

    Release it with ``memory.ReleaseResultSet``. OGR_GEOM_AREA is the same OGR area as GetArea.
    """
    where = f" WHERE OGR_GEOM_AREA >= {min_area!r}" if min_area > 0 else ""
    return memory.ExecuteSQL(f'SELECT CAST(FID + 1 AS integer) AS pid FROM "polygons"{where}')


@dataclass
class PolygonStats:
    """Per polygon sums, pixel counts and maxima of the probability, indexed by pid.

    The Memory driver numbers new features 0, 1, 2, ... so pids (FID + 1) stay below n + 1.
    """

    sums: np.ndarray
    counts: np.ndarray
    maxima: np.ndarray

    @classmethod
    def constant(cls, count: int, value: float) -> PolygonStats:
        """Statistics of ``count`` polygons whose pixels all hold ``value`` (a binary mask)."""
        return cls(
            np.full(count + 1, value), np.ones(count + 1, np.int64), np.full(count + 1, value)
        )

    @property
    def means(self) -> np.ndarray:
        """Mean probability per pid (0 where a polygon has no pixel)."""
        return self.sums / np.maximum(self.counts, 1)

    def add(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Accumulate pixels with polygon ids ``ids`` (all > 0) and probabilities ``values``."""
        size = self.sums.size
        self.sums += np.bincount(ids, weights=values, minlength=size)
        self.counts += np.bincount(ids, minlength=size)
        order = np.lexsort((values, ids))
        ids, values = ids[order], values[order]
        last = np.append(ids[1:] != ids[:-1], True)  # largest value of each id comes last
        self.maxima[ids[last]] = np.maximum(self.maxima[ids[last]], values[last])


def polygon_stats(
    layer: ogr.Layer, count: int, source: Source, path: Path, callbacks: Callbacks
) -> PolygonStats:
    """Rasterize the polygon ids onto the source grid and gather probability statistics."""
    stats = PolygonStats(
        np.zeros(count + 1), np.zeros(count + 1, np.int64), np.full(count + 1, -np.inf)
    )
    if count == 0:
        return stats
    ids = temp_raster(source, path, gdal.GDT_Int32)
    layer.ResetReading()
    stage = (0.5, 0.7, "measuring polygons")
    run_gdal(callbacks, stage, gdal.RasterizeLayer, ids, [1], layer, options=["ATTRIBUTE=pid"])
    ids_band = ids.GetRasterBand(1)
    chunks = row_chunks(source)
    for index, (row, rows) in enumerate(chunks):
        callbacks.check_canceled()
        pids = ids_band.ReadAsArray(0, row, source.width, rows).ravel()
        inside = pids > 0
        if inside.any():
            values, _valid = source.read(row, rows)
            stats.add(pids[inside].astype(np.int64), values.ravel()[inside])
        callbacks.progress(0.7 + 0.1 * (index + 1) / len(chunks), "measuring polygons")
    return stats
