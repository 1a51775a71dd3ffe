"""The user's tags as rules for the polygons: no change in a tile tagged unchanged.

A tile the user tagged *unchanged* says where change must not appear, so its pixels are cleared
from the change mask before polygonizing. A tile tagged *changed* that ends with no change pixel
is reported, so the user can look at it (the tag may be wrong, or the model has not learned that
kind of change; ``kdmsi suggest`` lists such tiles too). Tiles are matched by their pixel windows
on the raster's grid, which the tag layer shares with the pair it was made for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.tags import read_tags
from core.errors import KdmsiError
from core.io.windows import Window


@dataclass
class TagRules:
    """Pixel windows of the tagged tiles, and what the mask held in them.

    Attributes:
        unchanged: windows of the tiles tagged unchanged.
        changed: ``(tile id, window)`` of the tiles tagged changed.
        cleared: ids of unchanged-tagged tiles that had change pixels (cleared).
        change_pixels: per changed-tagged tile, the change pixels left in the mask.
    """

    unchanged: list[tuple[int, Window]]
    changed: list[tuple[int, Window]]
    cleared: set[int] = field(default_factory=set)
    change_pixels: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_layer(cls, path: Path, width: int, height: int, raster: Path) -> TagRules:
        """Read a tag layer made for a raster of ``width`` x ``height`` pixels.

        Raises:
            KdmsiError: when the layer cannot be read or was made for a raster of another size.
        """
        layer = read_tags(path)
        size = (int(layer.meta.get("width", -1)), int(layer.meta.get("height", -1)))
        if size != (width, height):
            raise KdmsiError(
                f"The tag layer {path} was made for a {size[0]}x{size[1]} raster, not {raster} "
                f"({width}x{height}); give the tag layer of the pair this map was made from."
            )
        tiles = [(t.tile.tile_id, t.tile.window, t.label) for t in layer.tagged]
        return cls(
            unchanged=[(i, w) for i, w, label in tiles if label == 0],
            changed=[(i, w) for i, w, label in tiles if label == 1],
        )

    def apply(self, mask: np.ndarray, row: int, col: int = 0) -> None:
        """Clear the unchanged-tagged tiles in a window of the 0/1 mask, in place.

        The window's top left pixel is (``col``, ``row``); the change pixels left in
        changed-tagged tiles are counted too.
        """
        chunk = Window(col, row, mask.shape[1], mask.shape[0])
        for tile_id, window in self.unchanged:
            part = window.intersection(chunk)
            if part is not None:
                rows = slice(part.row - row, part.row_end - row)
                cols = slice(part.col - col, part.col_end - col)
                if mask[rows, cols].any():
                    self.cleared.add(tile_id)
                    mask[rows, cols] = 0
        for tile_id, window in self.changed:
            part = window.intersection(chunk)
            if part is not None:
                rows = slice(part.row - row, part.row_end - row)
                count = int(mask[rows, part.col - col : part.col_end - col].sum())
                self.change_pixels[tile_id] = self.change_pixels.get(tile_id, 0) + count

    @property
    def changed_without_change(self) -> list[int]:
        """Ids of the changed-tagged tiles with no change pixel left."""
        return sorted(i for i, _ in self.changed if self.change_pixels.get(i, 0) == 0)
