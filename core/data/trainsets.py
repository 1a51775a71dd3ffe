"""Building training tile sets: from dataset folders (tags derived from masks) or a tag layer."""

from __future__ import annotations

from pathlib import Path

from core.callbacks import Callbacks
from core.data.datasets import PairFiles
from core.data.magnitude import pair_cue
from core.data.tags import check_layer_fits, read_tags, tags_from_mask
from core.data.tiles import Tile, pair_tiles
from core.data.tilesets import TileSet, load_tiles
from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch


def tiles_of_pair(
    files: PairFiles, size: int, bands: tuple[int, ...] | None, callbacks: Callbacks
) -> tuple[TileSet, list[Tile]]:
    """All tiles of one dataset pair with tags derived from its mask (changed if any pixel is)."""
    if files.label is None:
        raise KdmsiError(f"{files.before} has no mask in label/ to derive tile tags from; add one.")
    with RasterPair.open(files.before, files.after, bands, callbacks) as pair:
        tiles = pair_tiles(pair, size)
        tags = tags_from_mask(files.label, tiles, pair.grid)
        stretch = compute_stretch(pair)
        labels = [tags[t.tile_id] for t in tiles]
        cue = pair_cue(pair, stretch, callbacks.without_progress())
        return load_tiles(pair, stretch, tiles, labels, size, files.key, cue), tiles


def tiles_from_tag_layer(
    before: Path, after: Path, tags_path: Path, bands: tuple[int, ...] | None, callbacks: Callbacks
) -> TileSet:
    """The tagged tiles of a tag GeoPackage made by ``kdmsi grid`` or the QGIS plugin.

    Raises:
        KdmsiError: when the layer was made for a raster of another size or holds no tags.
    """
    layer = read_tags(tags_path)
    with RasterPair.open(before, after, bands, callbacks) as pair:
        check_layer_fits(layer, pair.grid, Path(tags_path), (Path(before), Path(after)), callbacks)
        tagged = layer.tagged
        if not tagged:
            raise KdmsiError(f"The tag layer {tags_path} has no tagged tile; tag some tiles first.")
        tile = int(layer.meta.get("tile", max(t.tile.window.width for t in tagged)))
        stretch = compute_stretch(pair)
        return load_tiles(
            pair,
            stretch,
            [t.tile for t in tagged],
            [int(t.label) for t in tagged],
            tile,
            before.stem,
            pair_cue(pair, stretch, callbacks.without_progress()),
        )


def check_tags(tiles: TileSet, source: str) -> None:
    """Training needs both classes: raise a clear error otherwise."""
    counts = tiles.counts
    if counts["changed"] == 0 or counts["unchanged"] == 0:
        raise KdmsiError(
            f"{source} has {counts['changed']} changed and {counts['unchanged']} unchanged tiles; "
            "tag at least one tile of each class (better: a few dozen)."
        )
