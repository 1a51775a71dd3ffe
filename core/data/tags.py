"""The tag layer: a GeoPackage of tile polygons, ``label`` 1 changed, 0 unchanged, NULL untagged.

The layer also records the pair and tiling it was made for (layer metadata ``kdmsi_*``), so a tag
layer from another pair is recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import ogr, osr

from core.callbacks import Callbacks
from core.data.tiles import Tile
from core.errors import KdmsiError
from core.io.gpkg import polygon_layer, window_polygon
from core.io.grid import Grid
from core.io.rasters import open_raster, read_failure, same_crs
from core.io.windows import Window

ogr.UseExceptions()
osr.UseExceptions()
LAYER = "tiles"
FIELDS = ("tile_id", "row", "col", "label", "px_col", "px_row", "px_width", "px_height")


@dataclass(frozen=True)
class TaggedTile:
    """A tile, its tag (None when untagged) and its polygon's centre in the layer's CRS."""

    tile: Tile
    label: int | None
    center: tuple[float, float] | None = None


@dataclass
class TagLayer:
    """The content of a tag GeoPackage.

    Attributes:
        tiles: every tile with its label.
        meta: what the layer was made for (``before``, ``after``, ``tile``, ``stride``, ``width``,
            ``height``).
        crs_wkt: the layer's CRS (empty when it has none).
    """

    tiles: list[TaggedTile]
    meta: dict[str, str] = field(default_factory=dict)
    crs_wkt: str = ""

    @property
    def tagged(self) -> list[TaggedTile]:
        """Tiles with a label."""
        return [t for t in self.tiles if t.label is not None]

    @property
    def counts(self) -> dict[str, int]:
        """Number of ``changed``, ``unchanged`` and ``untagged`` tiles."""
        labels = [t.label for t in self.tiles]
        return {
            "changed": labels.count(1),
            "unchanged": labels.count(0),
            "untagged": labels.count(None),
        }


def write_tags(
    path: Path,
    grid: Grid,
    tiles: list[Tile],
    labels: dict[int, int | None],
    meta: dict[str, str],
    overwrite: bool = False,
) -> None:
    """Write a tag GeoPackage of tile polygons in A's CRS.

    Args:
        path: output ``.gpkg``.
        grid: A's grid (tile polygons use its geotransform and CRS).
        tiles: the tiles.
        labels: tile id -> 1, 0 or None.
        meta: provenance stored as layer metadata (keys prefixed with ``kdmsi_``).
        overwrite: replace an existing file.
    """
    fields = [(name, ogr.OFTInteger) for name in FIELDS]
    with polygon_layer(path, grid, LAYER, fields, "tag layer", overwrite) as layer:
        layer.SetMetadata({f"kdmsi_{k}": str(v) for k, v in meta.items()})
        for tile in tiles:
            feature = ogr.Feature(layer.GetLayerDefn())
            w = tile.window
            values = (tile.tile_id, tile.row, tile.col, None, w.col, w.row, w.width, w.height)
            for name, value in zip(FIELDS, values):
                if value is not None:
                    feature.SetField(name, int(value))
            label = labels.get(tile.tile_id)
            if label is not None:
                feature.SetField("label", int(label))
            feature.SetGeometry(window_polygon(grid, w))
            layer.CreateFeature(feature)


def _open_error(path: Path, exc: BaseException) -> KdmsiError:
    """The user error for a tag GeoPackage that SQLite or OGR cannot read."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "locked" in reason.lower():
        return KdmsiError(
            f"The tag layer {path} is locked by another program (a QGIS edit session?); save or "
            "stop the edits there, or close it, and try again."
        )
    return KdmsiError(
        f"The tag layer {path} cannot be read ({reason}); it may be damaged: recreate it with "
        "`kdmsi grid` or restore a copy."
    )


def read_tags(path: Path) -> TagLayer:
    """Read a tag GeoPackage written by :func:`write_tags` or the QGIS plugin.

    Raises:
        KdmsiError: when the file is missing, locked, damaged, not a GeoPackage, or lacks the
            tag fields.
    """
    path = Path(path)
    if not path.exists():
        raise KdmsiError(f"The tag layer {path} does not exist; create it with `kdmsi grid`.")
    if path.is_dir():
        raise KdmsiError(f"The tag layer {path} is a folder; give the .gpkg file.")
    try:
        ds = ogr.Open(str(path))
        layer = ds.GetLayerByName(LAYER) if ds is not None else None
        if layer is None:
            raise KdmsiError(
                f"The tag layer {path} has no '{LAYER}' layer; create it with `kdmsi grid`."
            )
        defn = layer.GetLayerDefn()
        missing = [n for n in FIELDS if defn.GetFieldIndex(n) < 0]
        if missing:
            raise KdmsiError(
                f"The tag layer {path} lacks the field '{missing[0]}'; "
                "recreate it with `kdmsi grid`."
            )
        tiles = [_tagged_tile(feature, path) for feature in layer]
        srs = layer.GetSpatialRef()
        meta = {
            k.removeprefix("kdmsi_"): v
            for k, v in (layer.GetMetadata() or {}).items()
            if k.startswith("kdmsi_")
        }
    except RuntimeError as exc:
        raise _open_error(path, exc) from exc
    tiles.sort(key=lambda t: t.tile.tile_id)
    return TagLayer(tiles, meta, srs.ExportToWkt() if srs is not None else "")


def _tagged_tile(feature: ogr.Feature, path: Path) -> TaggedTile:
    """One feature of the tag layer as a tile, its tag and its polygon's centre."""
    values = [feature.GetField(n) for n in FIELDS]
    if any(values[i] is None for i in (0, 1, 2, 4, 5, 6, 7)):
        raise KdmsiError(
            f"The tag layer {path} has a tile without its id or pixel window (feature "
            f"{feature.GetFID()}); recreate it with `kdmsi grid`."
        )
    tile_id, row, col, _, px_col, px_row, px_width, px_height = values
    if px_width <= 0 or px_height <= 0 or px_col < 0 or px_row < 0:
        raise KdmsiError(
            f"The tag layer {path} has a tile with an impossible pixel window (feature "
            f"{feature.GetFID()}); recreate it with `kdmsi grid`."
        )
    label = feature.GetField("label") if feature.IsFieldSetAndNotNull("label") else None
    if label not in (None, 0, 1):
        raise KdmsiError(
            f"The tag layer {path} has label {label} on tile {tile_id}; labels are 1 (changed), "
            "0 (unchanged) or empty."
        )
    geometry = feature.GetGeometryRef()
    center = None
    if geometry is not None and not geometry.IsEmpty():
        point = geometry.Centroid()
        center = (point.GetX(), point.GetY())
    tile = Tile(tile_id, row, col, Window(px_col, px_row, px_width, px_height))
    return TaggedTile(tile, label, center)


def tags_from_mask(label_path: Path, tiles: list[Tile], grid: Grid) -> dict[int, int]:
    """Derive tile tags from a pixel mask: a tile is changed (1) if any of its pixels is.

    Pixel labels are used here only to make image-level tags, as in the weakly supervised
    protocol. Mask values > 0 are changed; nodata pixels are ignored.

    Raises:
        KdmsiError: when the mask is not the size of the pair.
    """
    ds = open_raster(label_path, "label mask")
    if (ds.RasterXSize, ds.RasterYSize) != (grid.width, grid.height):
        raise KdmsiError(
            f"The label mask {label_path} is {ds.RasterXSize}x{ds.RasterYSize} but the pair is "
            f"{grid.width}x{grid.height}; give the mask of this pair."
        )
    band = ds.GetRasterBand(1)
    tags = {}
    for tile in tiles:
        w = tile.window
        try:
            values = band.ReadAsArray(w.col, w.row, w.width, w.height)
            valid = band.GetMaskBand().ReadAsArray(w.col, w.row, w.width, w.height) > 0
        except RuntimeError as exc:
            raise read_failure(label_path, "label mask", exc) from exc
        tags[tile.tile_id] = int(bool(np.any((values > 0) & valid)))
    return tags


def check_layer_fits(
    layer: TagLayer, grid: Grid, path: Path, pair: tuple[Path, Path], callbacks: Callbacks
) -> None:
    """Check that a tag layer belongs to this pair before its tiles are read.

    Tiles are read by their pixel windows, so a layer saved in another CRS still works (and the
    log says so). A layer made for a raster of another size, or whose tile polygons lie
    elsewhere than their windows on A's grid, was made for another pair. An ungeoreferenced
    layer of the same size from other files cannot be told apart: that gives a warning.

    Args:
        layer: the tag layer.
        grid: A's grid.
        path: the layer's file, for messages.
        pair: the before and after rasters.
        callbacks: receives the CRS note and the provenance warning.

    Raises:
        KdmsiError: when the layer was made for another pair.
    """
    size = (int(layer.meta.get("width", -1)), int(layer.meta.get("height", -1)))
    if size != (grid.width, grid.height):
        raise KdmsiError(
            f"The tag layer {path} was made for a {size[0]}x{size[1]} raster, not "
            f"{pair[0]} ({grid.width}x{grid.height}); make a grid for this pair."
        )
    to_grid = _transform_to(layer.crs_wkt, grid, path, callbacks)
    if to_grid is not None:
        _check_positions(layer, grid, path, to_grid)
    made_for = (layer.meta.get("before"), layer.meta.get("after"))
    given = tuple(str(Path(p).resolve()) for p in pair)
    if all(made_for) and made_for != given:
        callbacks.warning(
            f"The tag layer {path} was made for {made_for[0]} and {made_for[1]}; its tiles fit "
            f"{pair[0].name} and {pair[1].name}, so it is used for them."
        )


def _transform_to(
    crs_wkt: str, grid: Grid, path: Path, callbacks: Callbacks
) -> osr.CoordinateTransformation | bool | None:
    """How to bring layer coordinates to A's: True (as they are), a transformation, or None."""
    layer_crs = "" if "Undefined Cartesian" in crs_wkt else crs_wkt
    if not layer_crs or not grid.crs_wkt:
        return True if not layer_crs and not grid.crs_wkt else None
    if same_crs(layer_crs, grid.crs_wkt):
        return True
    source, target = osr.SpatialReference(wkt=layer_crs), osr.SpatialReference(wkt=grid.crs_wkt)
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    callbacks.info(
        f"The tag layer {path.name} is in {source.GetName()}, the pair in {target.GetName()}; "
        "its tiles are matched by their pixel windows."
    )
    return osr.CoordinateTransformation(source, target)


def _check_positions(
    layer: TagLayer, grid: Grid, path: Path, to_grid: osr.CoordinateTransformation | bool
) -> None:
    """Raise when tile polygons lie more than a quarter tile from their windows on A's grid."""
    gt = grid.display_transform
    pixel = (abs(gt[1]) + abs(gt[2]), abs(gt[4]) + abs(gt[5]))
    for tagged in layer.tiles:
        if tagged.center is None:
            continue
        x, y = tagged.center
        if to_grid is not True:
            try:
                x, y = to_grid.TransformPoint(x, y)[:2]
            except RuntimeError:
                x, y = float("inf"), float("inf")
        w = tagged.tile.window
        ex, ey = grid.to_map(w.col + w.width / 2, w.row + w.height / 2)
        off = max(abs(x - ex) / pixel[0], abs(y - ey) / pixel[1])
        if not off <= max(w.width, w.height) / 4:
            raise KdmsiError(
                f"The tag layer {path} was made for another pair: its tile {tagged.tile.tile_id} "
                f"lies {off:.0f} pixels away from the same tile of {grid.width}x{grid.height} "
                "rasters here; make a grid for this pair with `kdmsi grid`."
            )
