"""The tag layer: a GeoPackage of tile polygons, ``label`` 1 changed, 0 unchanged, NULL untagged.

The layer also records the pair and tiling it was made for (layer metadata ``kdmsi_*``), so a tag
layer from another pair is recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import ogr

from core.errors import KdmsiError
from core.gpkg import polygon_layer, window_polygon
from core.grid import Grid
from core.rasters import open_raster
from core.tiles import Tile
from core.windows import Window

ogr.UseExceptions()
LAYER = "tiles"
FIELDS = ("tile_id", "row", "col", "label", "px_col", "px_row", "px_width", "px_height")


@dataclass(frozen=True)
class TaggedTile:
    """A tile and its tag (None when untagged)."""

    tile: Tile
    label: int | None


@dataclass
class TagLayer:
    """The content of a tag GeoPackage.

    Attributes:
        tiles: every tile with its label.
        meta: what the layer was made for (``before``, ``after``, ``tile``, ``stride``, ``width``,
            ``height``).
    """

    tiles: list[TaggedTile]
    meta: dict[str, str] = field(default_factory=dict)

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


def read_tags(path: Path) -> TagLayer:
    """Read a tag GeoPackage written by :func:`write_tags` or the QGIS plugin.

    Raises:
        KdmsiError: when the file is missing, not a GeoPackage, or lacks the tag fields.
    """
    path = Path(path)
    if not path.exists():
        raise KdmsiError(f"The tag layer {path} does not exist; create it with `kdmsi grid`.")
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise KdmsiError(
            f"The tag layer {path} cannot be opened ({str(exc).strip()}); "
            "recreate it with `kdmsi grid`."
        ) from exc
    layer = ds.GetLayerByName(LAYER) if ds is not None else None
    if layer is None:
        raise KdmsiError(
            f"The tag layer {path} has no '{LAYER}' layer; create it with `kdmsi grid`."
        )
    defn = layer.GetLayerDefn()
    missing = [n for n in FIELDS if defn.GetFieldIndex(n) < 0]
    if missing:
        raise KdmsiError(
            f"The tag layer {path} lacks the field '{missing[0]}'; recreate it with `kdmsi grid`."
        )
    tiles = []
    for feature in layer:
        window = Window(
            *(feature.GetField(n) for n in ("px_col", "px_row", "px_width", "px_height"))
        )
        tile = Tile(
            feature.GetField("tile_id"), feature.GetField("row"), feature.GetField("col"), window
        )
        label = feature.GetField("label") if feature.IsFieldSetAndNotNull("label") else None
        tiles.append(TaggedTile(tile, label))
    meta = {
        k.removeprefix("kdmsi_"): v
        for k, v in (layer.GetMetadata() or {}).items()
        if k.startswith("kdmsi_")
    }
    tiles.sort(key=lambda t: t.tile.tile_id)
    return TagLayer(tiles, meta)


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
        values = band.ReadAsArray(w.col, w.row, w.width, w.height)
        valid = band.GetMaskBand().ReadAsArray(w.col, w.row, w.width, w.height) > 0
        tags[tile.tile_id] = int(bool(np.any((values > 0) & valid)))
    return tags
