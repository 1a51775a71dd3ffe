"""Writing tile-polygon GeoPackages atomically (tag layers, tile suggestions)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from osgeo import ogr, osr

from core.errors import KdmsiError
from core.io.geotiff import check_output
from core.io.grid import Grid
from core.io.windows import Window

ogr.UseExceptions()
# A GeoPackage layer without a CRS would be filed as "undefined geographic"; pixel coordinates are
# Cartesian, so ungeoreferenced pairs get GDAL's undefined Cartesian SRS (srs_id -1).
UNDEFINED_CARTESIAN = 'LOCAL_CS["Undefined Cartesian SRS"]'


@contextmanager
def polygon_layer(
    path: Path,
    grid: Grid,
    name: str,
    fields: list[tuple[str, int]],
    role: str,
    overwrite: bool = False,
) -> Iterator[ogr.Layer]:
    """Yield a new polygon layer in A's CRS; the file appears at ``path`` only when complete.

    Args:
        path: output ``.gpkg``.
        grid: A's grid (CRS of the layer).
        name: layer name.
        fields: ``(name, OGR field type)`` pairs.
        role: how to call the file in messages ("tag layer", "suggestions file").
        overwrite: replace an existing file.

    Raises:
        KdmsiError: for another suffix or an existing output without ``overwrite``.
    """
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise KdmsiError(f"The {role} {path} must be a GeoPackage; use a .gpkg name.")
    check_output(path, overwrite)
    partial = path.with_name(f".{path.stem}.partial.gpkg")
    partial.unlink(missing_ok=True)
    try:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(partial))
    except RuntimeError as exc:
        raise KdmsiError(
            f"The {role} {path} cannot be written ({str(exc).strip()}); check the free disk "
            "space and the folder's permissions."
        ) from exc
    try:
        srs = osr.SpatialReference(wkt=grid.crs_wkt or UNDEFINED_CARTESIAN)
        layer = ds.CreateLayer(name, srs, ogr.wkbPolygon)
        for field_name, kind in fields:
            layer.CreateField(ogr.FieldDefn(field_name, kind))
        ds.StartTransaction()
        yield layer
        ds.CommitTransaction()
    except BaseException:
        ds = None
        partial.unlink(missing_ok=True)
        raise
    ds = None
    if path.exists():
        path.unlink()
    partial.replace(path)


def window_polygon(grid: Grid, window: Window) -> ogr.Geometry:
    """OGR polygon of a window's footprint in map coordinates."""
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in grid.window_ring(window):
        ring.AddPoint_2D(x, y)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    return polygon
