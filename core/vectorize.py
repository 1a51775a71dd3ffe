"""Turn a change probability (or mask) raster into change polygons.

Steps: threshold band 1 chunk by chunk into a temporary Byte mask (change is ``value >=
threshold``; nodata, masked and NaN pixels never are), GDAL Polygonize with the mask as its own
mask (4- or 8-connectivity, holes kept), drop polygons under ``min_area``, rasterize kept polygon
ids back for ``mean_prob``/``max_prob`` by ``numpy.bincount``, optionally simplify (shapely,
topology preserved), write ESRI Shapefile (with ``.prj``) or GeoPackage in the raster's CRS.
Areas are in map units squared. An ungeoreferenced raster gives pixel coordinates the way QGIS
shows such images (x = column, y = minus the row, see ``Grid.display_transform``) and no CRS
(a GeoPackage's srs_id -1, "undefined Cartesian"), so polygons overlay the image in QGIS.

Value scale rule: a Byte band whose largest valid value is above 1 is read as 0..255 and divided
by 255, so 0/255 masks and 8-bit probabilities work with threshold 0.5 (128 and up is change);
Byte bands of 0/1 and every other data type are used as they are. ``mean_prob`` and ``max_prob``
are reported on the same scale.

The output is written under a temporary name in the destination folder and renamed at the end,
so a failure never leaves a file (or set of shapefile files) that looks complete.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal, ogr, osr
from shapely import wkb

from core.callbacks import Callbacks
from core.errors import Canceled, KdmsiError
from core.rasters import grid_of

_TARGET_CHUNK_PIXELS = 1 << 22
_SHAPEFILE_PARTS = (
    ".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml",
)  # fmt: skip
_TEMP_TIFF = ("COMPRESS=DEFLATE", "ZLEVEL=1")


@dataclass(frozen=True)
class VectorizeParams:
    """How to turn probabilities into polygons.

    Attributes:
        threshold: a pixel is change when its (scaled) value is ``>= threshold``.
        min_area: polygons with an area below this (map units squared) are dropped.
        simplify: shapely topology-preserving simplification tolerance in map units; 0 = none.
        connectivity: 4 (edge neighbours) or 8 (corner neighbours join too).
    """

    threshold: float = 0.5
    min_area: float = 0.0
    simplify: float = 0.0
    connectivity: int = 4

    def __post_init__(self) -> None:
        """Raise KdmsiError on a connectivity not 4 or 8 or a bad threshold, area or tolerance."""
        if self.connectivity not in (4, 8):
            raise KdmsiError(f"Connectivity {self.connectivity} is not supported; use 4 or 8.")
        if not math.isfinite(self.threshold):
            raise KdmsiError("The vectorize threshold must be a finite number such as 0.5.")
        if not (self.min_area >= 0 and self.simplify >= 0):  # also refuses NaN
            raise KdmsiError("Minimum area and simplification tolerance must be 0 or more.")


@dataclass
class VectorizeResult:
    """What :func:`vectorize` wrote.

    Attributes:
        path: the output file (``.shp`` or ``.gpkg``).
        count: number of polygons written.
        total_area: sum of the written polygons' areas, map units squared.
    """

    path: Path
    count: int
    total_area: float


@dataclass
class _Source:
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

    def read(self, row: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(values / divisor as float64, valid)`` for ``rows`` full rows from ``row``."""
        values = self.band.ReadAsArray(0, row, self.width, rows).astype(np.float64)
        values /= self.divisor
        valid = np.isfinite(values)
        if self.band.GetMaskFlags() != gdal.GMF_ALL_VALID:
            valid &= self.band.GetMaskBand().ReadAsArray(0, row, self.width, rows) > 0
        return values, valid


def _output_parts(path: Path) -> list[Path]:
    """Return the files that make up the output (every shapefile sidecar, or the file)."""
    if path.suffix.lower() != ".shp":
        return [path]
    return [path.with_name(path.stem + ext) for ext in _SHAPEFILE_PARTS]


def _check_paths(prob_path: Path, out_path: Path, overwrite: bool) -> str:
    """Check the input exists and the output may be written; return the OGR driver name."""
    driver = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}.get(out_path.suffix.lower())
    if driver is None:
        raise KdmsiError(f"Cannot write polygons to {out_path}; name the output .shp or .gpkg.")
    if not prob_path.is_file():
        raise KdmsiError(f"The probability raster {prob_path} does not exist; check the path.")
    if not out_path.parent.is_dir():
        raise KdmsiError(f"The folder of {out_path} does not exist; create it first.")
    existing = [part for part in _output_parts(out_path) if part.exists()]
    if existing and not overwrite:
        raise KdmsiError(f"{existing[0]} already exists; choose another name or allow overwrite.")
    return driver


def _open_source(prob_path: Path) -> _Source:
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
    return _Source(dataset, band, divisor, srs, dataset.RasterXSize, dataset.RasterYSize)


def _row_chunks(source: _Source) -> list[tuple[int, int]]:
    """Split the rows into ``(first_row, row_count)`` chunks of a few million pixels."""
    block_rows = max(1, source.band.GetBlockSize()[1])
    rows = max(1, _TARGET_CHUNK_PIXELS // max(1, source.width))
    if rows >= block_rows:
        rows -= rows % block_rows
    return [(row, min(rows, source.height - row)) for row in range(0, source.height, rows)]


def _temp_raster(source: _Source, path: Path, data_type: int) -> gdal.Dataset:
    """Create a one band GeoTIFF on the source grid (no CRS) filled with zeros."""
    driver = gdal.GetDriverByName("GTiff")
    raster = driver.Create(str(path), source.width, source.height, 1, data_type, _TEMP_TIFF)
    raster.SetGeoTransform(grid_of(source.dataset).display_transform)
    return raster


def _threshold(source: _Source, threshold: float, path: Path, callbacks: Callbacks) -> gdal.Dataset:
    """Write the 0/1 change mask of ``source`` to a temporary GeoTIFF, chunk by chunk."""
    mask = _temp_raster(source, path, gdal.GDT_Byte)
    band = mask.GetRasterBand(1)
    chunks = _row_chunks(source)
    for index, (row, rows) in enumerate(chunks):
        callbacks.check_canceled()
        values, valid = source.read(row, rows)
        band.WriteArray((valid & (values >= threshold)).astype(np.uint8), 0, row)
        callbacks.progress(0.2 * (index + 1) / len(chunks), "thresholding")
    band.FlushCache()
    return mask


def _run_gdal(
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


def _polygonize(
    mask: gdal.Dataset, source: _Source, connectivity: int, callbacks: Callbacks
) -> tuple[ogr.DataSource, ogr.Layer]:
    """Polygonize the change pixels of ``mask`` into the in-memory layer ``polygons``."""
    memory = ogr.GetDriverByName("Memory").CreateDataSource("polygons")
    srs = source.srs
    if srs is None:  # a local CRS keeps RasterizeLayer from warning about a missing one
        srs = osr.SpatialReference()
        srs.SetLocalCS("pixels")
    layer = memory.CreateLayer("polygons", srs, ogr.wkbPolygon)
    band = mask.GetRasterBand(1)
    options = ["8CONNECTED=8"] if connectivity == 8 else []
    stage = (0.2, 0.5, "polygonizing")
    _run_gdal(callbacks, stage, gdal.Polygonize, band, band, layer, -1, options)
    return memory, layer


def _numbered(memory: ogr.DataSource, min_area: float) -> ogr.Layer:
    """Return an SQL view of the polygons of at least ``min_area`` with ``pid`` = FID + 1.

    Release it with ``memory.ReleaseResultSet``. OGR_GEOM_AREA is the same OGR area as GetArea.
    """
    where = f" WHERE OGR_GEOM_AREA >= {min_area!r}" if min_area > 0 else ""
    return memory.ExecuteSQL(f'SELECT CAST(FID + 1 AS integer) AS pid FROM "polygons"{where}')


@dataclass
class _Stats:
    """Per polygon sums, pixel counts and maxima of the probability, indexed by pid.

    The Memory driver numbers new features 0, 1, 2, ... so pids (FID + 1) stay below n + 1.
    """

    sums: np.ndarray
    counts: np.ndarray
    maxima: np.ndarray

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


def _polygon_stats(
    layer: ogr.Layer, count: int, source: _Source, path: Path, callbacks: Callbacks
) -> _Stats:
    """Rasterize the polygon ids onto the source grid and gather probability statistics."""
    stats = _Stats(np.zeros(count + 1), np.zeros(count + 1, np.int64), np.full(count + 1, -np.inf))
    if count == 0:
        return stats
    ids = _temp_raster(source, path, gdal.GDT_Int32)
    layer.ResetReading()
    stage = (0.5, 0.7, "measuring polygons")
    _run_gdal(callbacks, stage, gdal.RasterizeLayer, ids, [1], layer, options=["ATTRIBUTE=pid"])
    ids_band = ids.GetRasterBand(1)
    chunks = _row_chunks(source)
    for index, (row, rows) in enumerate(chunks):
        callbacks.check_canceled()
        pids = ids_band.ReadAsArray(0, row, source.width, rows).ravel()
        inside = pids > 0
        if inside.any():
            values, _valid = source.read(row, rows)
            stats.add(pids[inside].astype(np.int64), values.ravel()[inside])
        callbacks.progress(0.7 + 0.1 * (index + 1) / len(chunks), "measuring polygons")
    return stats


def _simplified(geometry: ogr.Geometry, tolerance: float) -> ogr.Geometry:
    """Simplify with shapely, preserving topology; keep the original if it would degenerate."""
    if tolerance <= 0:
        return geometry
    shape = wkb.loads(bytes(geometry.ExportToWkb()))
    simple = shape.simplify(tolerance, preserve_topology=True)
    if simple.is_empty or simple.geom_type != "Polygon":
        return geometry
    return ogr.CreateGeometryFromWkb(simple.wkb)


def _output_srs(source: _Source, driver: str) -> osr.SpatialReference | None:
    """Return the raster's CRS, or GeoPackage's "undefined Cartesian" (not GDAL's 0, geographic)."""
    if source.srs is not None or driver != "GPKG":
        return source.srs
    undefined = osr.SpatialReference()
    undefined.ImportFromWkt('LOCAL_CS["Undefined Cartesian SRS"]')
    return undefined


def _create_fields(layer: ogr.Layer, driver: str, source: _Source) -> None:
    """Add ``area``, ``mean_prob`` and ``max_prob``; size shapefile fields to the areas."""
    area = ogr.FieldDefn("area", ogr.OFTReal)
    if driver == "ESRI Shapefile":  # DBF numbers are fixed-width text: keep ~10 digits
        decimals = min(20, max(0, 10 - math.floor(math.log10(source.pixel_area))))
        largest = source.pixel_area * source.width * source.height
        area.SetWidth(max(1, math.floor(math.log10(max(largest, 1.0))) + 1) + decimals + 2)
        area.SetPrecision(decimals)
    layer.CreateField(area)
    layer.CreateField(ogr.FieldDefn("mean_prob", ogr.OFTReal))
    layer.CreateField(ogr.FieldDefn("max_prob", ogr.OFTReal))


def _write(
    polygons: ogr.Layer,
    stats: _Stats,
    target: tuple[Path, str, str],
    source: _Source,
    params: VectorizeParams,
    callbacks: Callbacks,
) -> tuple[int, float]:
    """Write the polygons with their attributes; return ``(count, total_area)``."""
    path, driver, layer_name = target
    dataset = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    layer = dataset.CreateLayer(layer_name, _output_srs(source, driver), ogr.wkbPolygon)
    _create_fields(layer, driver, source)  # fields 0, 1, 2: area, mean_prob, max_prob
    definition = layer.GetLayerDefn()
    means, maxima = stats.means.tolist(), stats.maxima.tolist()
    count, total = 0, 0.0
    layer.StartTransaction()
    for feature in polygons:
        pid = feature.GetFieldAsInteger64(0)
        geometry = _simplified(feature.GetGeometryRef(), params.simplify)
        out = ogr.Feature(definition)
        out.SetGeometry(geometry)
        area = geometry.GetArea()
        out.SetField(0, area)
        out.SetField(1, means[pid])
        out.SetField(2, maxima[pid])
        layer.CreateFeature(out)
        count, total = count + 1, total + area
        if count % 10000 == 0:
            callbacks.check_canceled()
            callbacks.progress(0.8 + 0.2 * count / len(means), "writing")
    layer.CommitTransaction()
    del definition, layer, dataset  # closes the file
    return count, total


def _move_into_place(temp: Path, out_path: Path) -> None:
    """Replace the output (all its parts) by the finished temporary file(s); ``.shp`` last."""
    for part in _output_parts(out_path):
        part.unlink(missing_ok=True)
    pairs = list(zip(_output_parts(temp), _output_parts(out_path)))
    for source, destination in sorted(pairs, key=lambda pair: pair[1].suffix == ".shp"):
        if source.exists():
            source.replace(destination)


def _run_steps(
    source: _Source, params: VectorizeParams, target: tuple[Path, str, str], callbacks: Callbacks
) -> tuple[int, float]:
    """Threshold, polygonize, measure and write ``target`` (path, driver, layer name)."""
    with tempfile.TemporaryDirectory(prefix="kdmsi-vectorize-") as work:
        mask = _threshold(source, params.threshold, Path(work) / "mask.tif", callbacks)
        memory, polygons = _polygonize(mask, source, params.connectivity, callbacks)
        del mask
        size = polygons.GetFeatureCount()  # before the SQL view filters the layer
        numbered = _numbered(memory, params.min_area)
        try:
            stats = _polygon_stats(numbered, size, source, Path(work) / "ids.tif", callbacks)
            return _write(numbered, stats, target, source, params, callbacks)
        finally:
            memory.ReleaseResultSet(numbered)


def vectorize(
    prob_path: Path,
    out_path: Path,
    params: VectorizeParams,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> VectorizeResult:
    """Threshold a probability or mask raster and write its change polygons.

    Args:
        prob_path: single band raster (band 1 is used); see the module notes on value scale.
        out_path: ``.shp`` (ESRI Shapefile with ``.prj``) or ``.gpkg`` (GeoPackage).
        params: threshold, minimum area, simplification and connectivity.
        callbacks: progress and cancel hooks; None reports nothing.
        overwrite: replace an existing output; otherwise an existing output is refused.

    Returns:
        The output path, the number of polygons and their total area (map units squared).

    Raises:
        KdmsiError: on an unknown output suffix, a missing or unreadable input, an existing
            output without ``overwrite``, or a failure to write the output.
        Canceled: when ``callbacks.is_canceled()`` becomes True.
    """
    gdal.UseExceptions()
    ogr.UseExceptions()
    callbacks = callbacks or Callbacks()
    prob_path, out_path = Path(prob_path), Path(out_path)
    driver = _check_paths(prob_path, out_path, overwrite)
    source = _open_source(prob_path)
    if source.dataset.RasterCount > 1:
        callbacks.warning(f"{prob_path} has {source.dataset.RasterCount} bands; using band 1.")
    temp = out_path.with_name(f".{out_path.stem}.partial-{uuid.uuid4().hex[:8]}{out_path.suffix}")
    try:
        count, total = _run_steps(source, params, (temp, driver, out_path.stem), callbacks)
        _move_into_place(temp, out_path)
    except (RuntimeError, OSError) as exc:
        raise KdmsiError(
            f"Could not vectorize {prob_path} into {out_path} ({exc}); check space and permissions."
        ) from exc
    finally:
        for part in _output_parts(temp):
            part.unlink(missing_ok=True)
    callbacks.progress(1.0, f"{count} polygons")
    return VectorizeResult(out_path, count, total)
