"""Writing the polygons of :func:`core.vector.vectorize.vectorize` with their attributes.

Fields ``area`` (map units squared), ``mean_prob`` and ``max_prob``; optional shapely
simplification that preserves topology; the raster's CRS, or GeoPackage's "undefined
Cartesian" for an ungeoreferenced raster.

Without simplification the polygons stay in GDAL's in-memory layer: a Python loop sets each
one's attributes there (:func:`copy_measured`; a 0/1 mask needs none, :func:`copy_constant`)
and :func:`copy_layer` copies the layer in C. With simplification each polygon is simplified
and written one by one (:func:`write_polygons`).

Shapefiles want outer rings clockwise and holes counter-clockwise; GDAL's writer checks and
rewinds every polygon, which took 70 % of the time of writing 160,000 polygons. Where GDAL has
SpatiaLite, the polygons are copied by one SQLite-dialect statement that orients the rings
(``ST_ForcePolygonCW``) with that check off (``SHAPE_REWIND_ON_WRITE=NO``): the ``.shp`` is
byte-identical, three times faster. Without SpatiaLite GDAL's own rewinding runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from osgeo import gdal, ogr, osr

from core.callbacks import Callbacks
from core.vector.polygonize import PolygonStats, Source, run_gdal

# Orienting rings in SpatiaLite writes a Shapefile 3x faster than GDAL's rewinding, polygon by
# polygon, but loading SpatiaLite costs about 0.1 s: with fewer polygons GDAL rewinds them.
ORIENT_IN_SQL_FROM = 10_000


def simplified(geometry: ogr.Geometry, tolerance: float) -> ogr.Geometry:
    """Simplify with shapely, preserving topology; keep the original if it would degenerate."""
    if tolerance <= 0:
        return geometry
    from shapely import wkb  # imported here: only simplification needs shapely

    shape = wkb.loads(bytes(geometry.ExportToWkb()))
    simple = shape.simplify(tolerance, preserve_topology=True)
    if simple.is_empty or simple.geom_type != "Polygon":
        return geometry
    return ogr.CreateGeometryFromWkb(simple.wkb)


def output_srs(source: Source, driver: str) -> osr.SpatialReference | None:
    """Return the raster's CRS, or GeoPackage's "undefined Cartesian" (not GDAL's 0, geographic)."""
    if source.srs is not None or driver != "GPKG":
        return source.srs
    undefined = osr.SpatialReference()
    undefined.ImportFromWkt('LOCAL_CS["Undefined Cartesian SRS"]')
    return undefined


def create_fields(layer: ogr.Layer, driver: str, source: Source) -> None:
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


def write_polygons(
    polygons: ogr.Layer,
    stats: PolygonStats,
    target: tuple[Path, str, str],
    source: Source,
    tolerance: float,
    callbacks: Callbacks,
    peak: float = -np.inf,
) -> tuple[int, float]:
    """Write the polygons with their attributes; return ``(count, total_area)``.

    A Shapefile is written through an in-memory layer and :func:`copy_layer` (see the module
    notes); a GeoPackage directly.

    Args:
        polygons: the layer to copy, field 0 the polygon id (``pid``) that indexes ``stats``.
        stats: per polygon probability statistics.
        target: output path, OGR driver name and layer name.
        source: the raster the polygons come from (CRS, pixel area).
        tolerance: simplification tolerance in map units; 0 keeps the geometries as they are.
        callbacks: progress and cancel, checked every 10,000 polygons.
        peak: polygons whose ``max_prob`` is under it are left out.
    """
    path, driver, layer_name = target
    staged = driver == "ESRI Shapefile"
    memory = gdal.GetDriverByName("Memory").Create("attributed", 0, 0, 0, gdal.GDT_Unknown)
    dataset = memory if staged else ogr.GetDriverByName(driver).CreateDataSource(str(path))
    name = "attributed" if staged else layer_name
    layer = dataset.CreateLayer(name, output_srs(source, driver), ogr.wkbPolygon)
    create_fields(layer, driver, source)  # fields 0, 1, 2: area, mean_prob, max_prob
    count, total = _write_features(polygons, stats, layer, (tolerance, peak), callbacks)
    del layer, dataset  # closes a GeoPackage
    if staged:
        columns = "area, mean_prob, max_prob"
        copy_layer(memory, "attributed", columns, "", target, source, callbacks, 0.85)
    return count, total


def _write_features(
    polygons: ogr.Layer,
    stats: PolygonStats,
    layer: ogr.Layer,
    shape: tuple[float, float],
    callbacks: Callbacks,
) -> tuple[int, float]:
    """Create one feature per polygon in ``layer``; return ``(count, total_area)``.

    ``shape`` is ``(tolerance, peak)``: the simplification tolerance, and the ``max_prob`` a
    polygon must reach to be written.
    """
    tolerance, peak = shape
    means, maxima = stats.means.tolist(), stats.maxima.tolist()
    size = max(1, polygons.GetFeatureCount())
    out = ogr.Feature(layer.GetLayerDefn())  # one feature reused: no wrapper per polygon
    count, total = 0, 0.0
    layer.StartTransaction()
    for feature in polygons:
        pid = feature.GetFieldAsInteger64(0)
        if maxima[pid] < peak:
            continue
        geometry = simplified(feature.GetGeometryRef(), tolerance)
        area = geometry.GetArea()
        out.SetGeometry(geometry)
        out.SetField(0, area)
        out.SetField(1, means[pid])
        out.SetField(2, maxima[pid])
        out.SetFID(-1)
        layer.CreateFeature(out)
        count, total = count + 1, total + area
        if count % 10000 == 0:
            callbacks.check_canceled()
            callbacks.progress(0.7 + 0.15 * min(1.0, count / size), "writing")
    layer.CommitTransaction()
    return count, total


def has_spatialite(dataset: gdal.Dataset) -> bool:
    """Whether GDAL's SQLite dialect has SpatiaLite's functions (``ST_ForcePolygonCW``)."""
    try:
        result = dataset.ExecuteSQL("SELECT spatialite_version()", dialect="SQLite")
    except RuntimeError:
        return False
    dataset.ReleaseResultSet(result)
    return True


def copy_layer(
    memory: gdal.Dataset,
    name: str,
    columns: str,
    where: str,
    target: tuple[Path, str, str],
    source: Source,
    callbacks: Callbacks,
    start: float = 0.7,
) -> None:
    """Copy the polygons of ``memory``'s layer ``name`` into a new ``target`` in C.

    Args:
        memory: an in-memory dataset.
        name: its layer.
        columns: the SQL select list of ``area``, ``mean_prob`` and ``max_prob`` (geometry is
            added); ``OGR_GEOM_AREA`` stands for the polygon's area.
        where: an SQL condition on the same terms, or "".
        target: output path, OGR driver name and layer name.
        source: the raster the polygons come from (CRS, pixel area).
        callbacks: progress (from ``start`` to 1) and cancel.
        start: the progress fraction at which the copy starts.
    """
    path, driver, layer_name = target
    condition = f" WHERE {where}" if where else ""
    oriented = (
        driver == "ESRI Shapefile"
        and memory.GetLayerByName(name).GetFeatureCount() >= ORIENT_IN_SQL_FROM
        and has_spatialite(memory)
    )
    if oriented:
        select, condition = (
            text.replace("OGR_GEOM_AREA", "ST_Area(GEOMETRY)") for text in (columns, condition)
        )
        sql = f'SELECT ST_ForcePolygonCW(GEOMETRY) AS GEOMETRY, {select} FROM "{name}"{condition}'
    else:
        sql = f'SELECT {columns} FROM "{name}"{condition}'
    rewind = gdal.GetThreadLocalConfigOption("SHAPE_REWIND_ON_WRITE", None)
    if oriented:  # read when the layer is created
        gdal.SetThreadLocalConfigOption("SHAPE_REWIND_ON_WRITE", "NO")
    try:
        dataset = gdal.GetDriverByName(driver).Create(str(path), 0, 0, 0, gdal.GDT_Unknown)
        layer = dataset.CreateLayer(layer_name, output_srs(source, driver), ogr.wkbPolygon)
        create_fields(layer, driver, source)
        options = {"SQLStatement": sql, "accessMode": "append", "layerName": layer.GetName()}
        if oriented:  # no progress from an SQLite view (GDAL would warn): one step, no cancel
            callbacks.check_canceled()
            gdal.VectorTranslate(dataset, memory, SQLDialect="SQLite", **options)
        else:
            run_gdal(callbacks, (start, 1.0, "writing"), gdal.VectorTranslate, dataset, memory,
                     **options)  # fmt: skip
        del layer, dataset  # closes the file
    finally:
        gdal.SetThreadLocalConfigOption("SHAPE_REWIND_ON_WRITE", rewind)


def _where(min_area: float) -> str:
    """The SQL condition that keeps polygons of at least ``min_area`` ("" for all)."""
    return f"OGR_GEOM_AREA >= {min_area!r}" if min_area > 0 else ""


def _summed_areas(memory: gdal.Dataset, where: str) -> tuple[int, float]:
    """Count and total area (summed in order) of the polygons of ``polygons`` meeting ``where``.

    OGR SQL's ``SUM(OGR_GEOM_AREA)`` is not used: GDAL 3.6 drops the exponent of areas below
    about 1e-5 (a geographic CRS's square degrees) and sums 3.27e-07 as 3.27. The areas are
    read through an Arrow stream (no Python per polygon) where GDAL has one.
    """
    condition = f" WHERE {where}" if where else ""
    view = memory.ExecuteSQL(f'SELECT OGR_GEOM_AREA AS area FROM "polygons"{condition}')
    try:
        if hasattr(view, "GetArrowStreamAsNumPy"):
            options = ["INCLUDE_FID=NO", "USE_MASKED_ARRAYS=NO"]
            with view.GetArrowStreamAsNumPy(options) as stream:
                areas = np.concatenate([np.empty(0), *(batch["area"] for batch in stream)])
        else:
            areas = np.array([feature.GetFieldAsDouble(0) for feature in view], np.float64)
    finally:
        memory.ReleaseResultSet(view)
    return areas.size, float(np.cumsum(areas)[-1]) if areas.size else 0.0


def copy_constant(
    memory: gdal.Dataset,
    min_area: float,
    value: float,
    target: tuple[Path, str, str],
    source: Source,
    callbacks: Callbacks,
) -> tuple[int, float]:
    """Write the polygons of a binary mask (attributes ``mean_prob = max_prob = value``) in C.

    The polygons of the in-memory layer ``polygons`` of at least ``min_area`` are copied by
    :func:`copy_layer` with their area, so no Python runs per polygon.

    Returns:
        ``(count, total_area)``.
    """
    where = _where(min_area)
    count, total = _summed_areas(memory, where)
    columns = f"OGR_GEOM_AREA AS area, {value!r} AS mean_prob, {value!r} AS max_prob"
    copy_layer(memory, "polygons", columns, where, target, source, callbacks)
    return count, total


def _real_setter() -> Callable[[ogr.Feature, int, float], object]:
    """``setter(feature, index, value)`` for a float field value.

    The bindings' own function, where they have it, skips ``Feature.SetField``'s Python-side
    type dispatch: a fifth of the attribute loop over 160,000 polygons.
    """
    return getattr(getattr(ogr, "_ogr", None), "Feature_SetField", None) or ogr.Feature.SetField


def _set_attributes(
    layer: ogr.Layer, stats: PolygonStats, keep: tuple[float, float], callbacks: Callbacks
) -> tuple[float, list[int]]:
    """Set fields 1-3 (area, mean_prob, max_prob) of every polygon that ``keep`` keeps.

    ``keep`` is ``(min_area, peak)``: a polygon is kept when its area is at least ``min_area``
    and its ``max_prob`` at least ``peak``.

    Returns:
        The total area of those polygons (summed in order) and the FIDs of the others.
    """
    min_area, peak = keep
    means, maxima = stats.means.tolist(), stats.maxima.tolist()
    size, total, small = max(1, layer.GetFeatureCount()), 0.0, []
    next_feature, set_feature = layer.GetNextFeature, layer.SetFeature  # bound once: a hot loop
    set_real = _real_setter()
    layer.ResetReading()
    feature, done = next_feature(), 0
    while feature is not None:
        area = feature.GetGeometryRef().GetArea()
        pid = feature.GetFieldAsInteger64(0)
        if area >= min_area and maxima[pid] >= peak:
            total += area
            set_real(feature, 1, area)
            set_real(feature, 2, means[pid])
            set_real(feature, 3, maxima[pid])
            set_feature(feature)
        else:
            small.append(feature.GetFID())
        done += 1
        if done % 10000 == 0:
            callbacks.check_canceled()
            callbacks.progress(0.6 + 0.1 * done / size, "measuring polygons")
        feature = next_feature()
    return total, small


def copy_measured(
    memory: gdal.Dataset,
    stats: PolygonStats,
    min_area: float,
    target: tuple[Path, str, str],
    source: Source,
    callbacks: Callbacks,
    peak: float = -np.inf,
) -> tuple[int, float]:
    """Write labelled polygons (field 0 ``pid``) with their statistics; geometry copied in C.

    Each polygon of the in-memory layer ``polygons`` gets its ``area`` (OGR's, as the per-polygon
    writer) and the ``mean_prob`` and ``max_prob`` of its ``pid``; polygons under ``min_area``
    or whose ``max_prob`` is under ``peak`` are dropped. That loop is the only Python per
    polygon; :func:`copy_layer` writes the rest.

    Returns:
        ``(count, total_area)``.
    """
    layer = memory.GetLayerByName("polygons")
    for name in ("area", "mean_prob", "max_prob"):  # fields 1, 2 and 3
        layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
    total, small = _set_attributes(layer, stats, (min_area, peak), callbacks)
    for fid in small:  # dropped by the area that is summed, not by SQL's
        layer.DeleteFeature(fid)
    columns = "area, mean_prob, max_prob"
    copy_layer(memory, "polygons", columns, "", target, source, callbacks)
    return layer.GetFeatureCount(), total
