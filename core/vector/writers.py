"""Writing the polygons of :func:`core.vector.vectorize.vectorize` with their attributes.

Fields ``area`` (map units squared), ``mean_prob`` and ``max_prob``; optional shapely
simplification that preserves topology; the raster's CRS, or GeoPackage's "undefined
Cartesian" for an ungeoreferenced raster.

Shapefiles want outer rings clockwise and holes counter-clockwise; GDAL's writer checks and
rewinds every polygon, which took 70 % of the time of writing 160,000 polygons. Where GDAL has
SpatiaLite, the polygons are copied by one SQLite-dialect statement that orients the rings
(``ST_ForcePolygonCW``) with that check off (``SHAPE_REWIND_ON_WRITE=NO``): the ``.shp`` is
byte-identical, three times faster. Without SpatiaLite GDAL's own rewinding runs.
"""

from __future__ import annotations

import math
from pathlib import Path

from osgeo import gdal, ogr, osr
from shapely import wkb

from core.callbacks import Callbacks
from core.vector.polygonize import PolygonStats, Source, run_gdal


def simplified(geometry: ogr.Geometry, tolerance: float) -> ogr.Geometry:
    """Simplify with shapely, preserving topology; keep the original if it would degenerate."""
    if tolerance <= 0:
        return geometry
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
    """
    path, driver, layer_name = target
    staged = driver == "ESRI Shapefile"
    memory = gdal.GetDriverByName("Memory").Create("attributed", 0, 0, 0, gdal.GDT_Unknown)
    dataset = memory if staged else ogr.GetDriverByName(driver).CreateDataSource(str(path))
    name = "attributed" if staged else layer_name
    layer = dataset.CreateLayer(name, output_srs(source, driver), ogr.wkbPolygon)
    create_fields(layer, driver, source)  # fields 0, 1, 2: area, mean_prob, max_prob
    count, total = _write_features(polygons, stats, layer, tolerance, callbacks)
    del layer, dataset  # closes a GeoPackage
    if staged:
        columns = "area, mean_prob, max_prob"
        copy_layer(memory, "attributed", columns, "", target, source, callbacks)
    return count, total


def _write_features(
    polygons: ogr.Layer,
    stats: PolygonStats,
    layer: ogr.Layer,
    tolerance: float,
    callbacks: Callbacks,
) -> tuple[int, float]:
    """Create one feature per polygon in ``layer``; return ``(count, total_area)``."""
    means, maxima = stats.means.tolist(), stats.maxima.tolist()
    out = ogr.Feature(layer.GetLayerDefn())  # one feature reused: no wrapper per polygon
    count, total = 0, 0.0
    layer.StartTransaction()
    for feature in polygons:
        pid = feature.GetFieldAsInteger64(0)
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
            callbacks.progress(0.8 + 0.2 * count / len(means), "writing")
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
        callbacks: progress and cancel.
    """
    path, driver, layer_name = target
    condition = f" WHERE {where}" if where else ""
    oriented = driver == "ESRI Shapefile" and has_spatialite(memory)
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
            run_gdal(callbacks, (0.5, 1.0, "writing"), gdal.VectorTranslate, dataset, memory,
                     **options)  # fmt: skip
        del layer, dataset  # closes the file
    finally:
        gdal.SetThreadLocalConfigOption("SHAPE_REWIND_ON_WRITE", rewind)


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
    :func:`copy_layer` with their area, so no Python runs per polygon; count and total area come
    from an SQL sum.

    Returns:
        ``(count, total_area)``.
    """
    where = f"OGR_GEOM_AREA >= {min_area!r}" if min_area > 0 else ""
    condition = f" WHERE {where}" if where else ""
    summary = memory.ExecuteSQL(
        f'SELECT COUNT(*) AS n, SUM(OGR_GEOM_AREA) AS total FROM "polygons"{condition}'
    )
    try:
        row = summary.GetNextFeature()
        count, total = row.GetFieldAsInteger64(0), row.GetFieldAsDouble(1)
    finally:
        memory.ReleaseResultSet(summary)
    columns = f"OGR_GEOM_AREA AS area, {value!r} AS mean_prob, {value!r} AS max_prob"
    copy_layer(memory, "polygons", columns, where, target, source, callbacks)
    return count, total
