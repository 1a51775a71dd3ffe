"""The raster side of :func:`core.vector.vectorize.vectorize`: open, read, polygonize.

:class:`Source` reads the probability raster and says which pixels are change; the pass that
labels and measures the change components lives in :mod:`core.vector.labelling`, and GDAL
Polygonize turns its label raster (or a 0/1 mask as it is) into an in-memory layer. See
:mod:`core.vector.vectorize` for the value scale rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal, ogr, osr

from core.callbacks import Callbacks
from core.errors import Canceled, KdmsiError
from core.io.rasters import grid_of

_TARGET_CHUNK_PIXELS = 1 << 22


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

    def read(self, row: int, rows: int) -> np.ndarray:
        """Return ``rows`` full rows from ``row`` as stored (not scaled)."""
        return self.band.ReadAsArray(0, row, self.width, rows)

    def above(self, values: np.ndarray, threshold: float) -> np.ndarray:
        """Where ``values / divisor >= threshold`` in float64, validity aside.

        Float32 values are compared in float32 with the smallest float32 not below the
        threshold (:func:`float32_at_least`): the same pixels without a float64 copy.
        """
        if values.dtype == np.float32 and self.divisor == 1.0:
            return values >= float32_at_least(threshold)
        return scaled(values, self.divisor) >= threshold

    def mask_hides(self, threshold: float) -> bool:
        """Whether the band's mask may hide a pixel at or above ``threshold``.

        A mask made of a nodata value below the threshold cannot (GDAL compares a float nodata
        value within a few ulps; the margin here is far wider), so it need not be read.
        """
        flags = self.band.GetMaskFlags()
        if flags == gdal.GMF_ALL_VALID:
            return False
        nodata = self.band.GetNoDataValue()
        if flags != gdal.GMF_NODATA or nodata is None:
            return True
        if math.isnan(nodata):  # such pixels are NaN, never at or above a threshold
            return False
        nodata /= self.divisor
        return not nodata < threshold - 1e-6 * (abs(nodata) + abs(threshold))


def scaled(values: np.ndarray, divisor: float) -> np.ndarray:
    """``values / divisor`` in float64: the probabilities that are compared and measured."""
    values = values.astype(np.float64)
    if divisor != 1.0:
        values /= divisor
    return values


def float32_at_least(threshold: float) -> np.float32:
    """The smallest float32 ``t >= threshold``: float32 ``v >= t`` iff ``v >= threshold``."""
    with np.errstate(over="ignore"):
        value = np.float32(threshold)
    if float(value) < threshold:
        value = np.nextafter(value, np.float32(np.inf))
    return value


def open_source(prob_path: Path) -> Source:
    """Open the raster, pick the value scale and the CRS (traditional x/y axis order)."""
    try:
        dataset = gdal.Open(str(prob_path))
        if dataset is not None and dataset.GetDriver().ShortName == "GTiff":
            # decode the compressed blocks of one read on every core (GDAL >= 3.6; older
            # versions ignore the option): reading is most of the time when change is sparse
            threads = ["NUM_THREADS=ALL_CPUS"]
            dataset = gdal.OpenEx(str(prob_path), gdal.OF_RASTER, open_options=threads)
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


def row_chunks(source: Source, align: int = 1) -> list[tuple[int, int]]:
    """Split the rows into ``(first_row, row_count)`` chunks of a few million pixels.

    Chunks hold whole blocks of the source and, where they are that tall, a multiple of
    ``align`` rows (the block height of a raster written chunk by chunk).
    """
    block_rows = max(1, source.band.GetBlockSize()[1])
    rows = max(1, _TARGET_CHUNK_PIXELS // max(1, source.width))
    for unit in (math.lcm(block_rows, align), block_rows):
        if rows >= unit:
            rows -= rows % unit
            break
    return [(row, min(rows, source.height - row)) for row in range(0, source.height, rows)]


def temp_raster(
    source: Source, path: Path, data_type: int, options: tuple[str, ...]
) -> gdal.Dataset:
    """Create a one band GeoTIFF on the source grid (no CRS) filled with zeros."""
    driver = gdal.GetDriverByName("GTiff")
    raster = driver.Create(str(path), source.width, source.height, 1, data_type, list(options))
    raster.SetGeoTransform(grid_of(source.dataset).display_transform)
    return raster


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


def polygon_layer(source: Source, with_pid: bool) -> tuple[gdal.Dataset, ogr.Layer]:
    """Create the in-memory dataset and its layer ``polygons`` in the source's CRS.

    With ``with_pid`` the layer has the integer field 0, ``pid``.
    """
    memory = gdal.GetDriverByName("Memory").Create("polygons", 0, 0, 0, gdal.GDT_Unknown)
    srs = source.srs
    if srs is None:  # an explicit local CRS rather than none; the writers set the output's
        srs = osr.SpatialReference()
        srs.SetLocalCS("pixels")
    layer = memory.CreateLayer("polygons", srs, ogr.wkbPolygon)
    if with_pid:
        layer.CreateField(ogr.FieldDefn("pid", ogr.OFTInteger))
    return memory, layer


def polygonize(
    raster: gdal.Dataset,
    source: Source,
    connectivity: int,
    callbacks: Callbacks,
    with_pid: bool = False,
) -> gdal.Dataset:
    """Polygonize the nonzero pixels of ``raster`` into the in-memory layer ``polygons``.

    ``raster`` is a label raster (:mod:`core.vector.labelling`) or a 0/1 mask, and its own mask:
    zero is no change. With ``with_pid`` GDAL writes each polygon's pixel value (its label, or 1
    for a mask) to the layer's field 0, ``pid``. Returns the in-memory dataset.
    """
    memory, layer = polygon_layer(source, with_pid)
    band = raster.GetRasterBand(1)
    options = ["8CONNECTED=8"] if connectivity == 8 else []
    stage = (0.3, 0.6, "polygonizing")
    run_gdal(callbacks, stage, gdal.Polygonize, band, band, layer, 0 if with_pid else -1, options)
    return memory


def numbered(memory: gdal.Dataset, min_area: float) -> ogr.Layer:
    """Return an SQL view of the ``pid`` of the polygons of at least ``min_area``.

    Release it with ``memory.ReleaseResultSet``. OGR_GEOM_AREA is the same OGR area as GetArea.
    """
    where = f" WHERE OGR_GEOM_AREA >= {min_area!r}" if min_area > 0 else ""
    return memory.ExecuteSQL(f'SELECT pid FROM "polygons"{where}')


@dataclass
class PolygonStats:
    """Per polygon sums, pixel counts and maxima of the probability, indexed by ``pid``."""

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
