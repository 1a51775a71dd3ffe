"""A regular grid of tiles over a raster pair: the unit a person tags as changed or unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.windows import Window

MIN_EDGE_FRACTION = 0.25
MASK_SAMPLE_PIXELS = 4_000_000


@dataclass(frozen=True)
class Tile:
    """One tile: its id (row-major), grid row and column, and pixel window on A's grid."""

    tile_id: int
    row: int
    col: int
    window: Window


@dataclass(frozen=True)
class TileSpec:
    """How a raster is cut into tiles.

    Attributes:
        width: raster columns.
        height: raster rows.
        size: tile edge in pixels.
        stride: step between tiles (``size`` for a grid without overlap).
    """

    width: int
    height: int
    size: int = 256
    stride: int = 0

    @property
    def step(self) -> int:
        """The stride, with 0 meaning "same as the tile size"."""
        return self.stride or self.size

    @property
    def rows(self) -> int:
        """Number of tile rows."""
        return len(self._starts(self.height))

    @property
    def cols(self) -> int:
        """Number of tile columns."""
        return len(self._starts(self.width))

    def _starts(self, length: int) -> list[int]:
        """Tile starts along one axis; a clipped edge tile is kept when it is not a sliver."""
        starts = list(range(0, length, self.step))
        keep = [s for s in starts if length - s >= min(self.size, length) * MIN_EDGE_FRACTION]
        return keep or [0]

    def tiles(self) -> list[Tile]:
        """All tiles, row by row, clipped to the raster."""
        if self.size < 8 or self.step < 1:
            raise KdmsiError(f"Tile size {self.size} is too small; use at least 8 pixels.")
        tiles = []
        for r, row in enumerate(self._starts(self.height)):
            for c, col in enumerate(self._starts(self.width)):
                window = Window(
                    col, row, min(self.size, self.width - col), min(self.size, self.height - row)
                )
                tiles.append(Tile(r * self.cols + c, r, c, window))
        return tiles


def valid_fractions(pair: RasterPair, tiles: list[Tile]) -> np.ndarray:
    """Fraction of pixels with data on both dates in each tile, from a decimated mask read."""
    width, height = pair.grid.width, pair.grid.height
    scale = min(1.0, (MASK_SAMPLE_PIXELS / (width * height)) ** 0.5)
    cols, rows = max(1, round(width * scale)), max(1, round(height * scale))
    valid = pair.read(Window(0, 0, width, height), out_size=(cols, rows)).valid
    fractions = np.empty(len(tiles), dtype=np.float64)
    for i, tile in enumerate(tiles):
        w = tile.window
        r0, r1 = (
            int(w.row * rows / height),
            max(int(w.row * rows / height) + 1, int(w.row_end * rows / height)),
        )
        c0, c1 = (
            int(w.col * cols / width),
            max(int(w.col * cols / width) + 1, int(w.col_end * cols / width)),
        )
        fractions[i] = valid[r0:r1, c0:c1].mean()
    return fractions


def pair_tiles(pair: RasterPair, size: int, stride: int = 0) -> list[Tile]:
    """Tiles of a pair that hold data on both dates (all-nodata tiles are left out)."""
    tiles = TileSpec(pair.grid.width, pair.grid.height, size, stride).tiles()
    fractions = valid_fractions(pair, tiles)
    return [tile for tile, fraction in zip(tiles, fractions) if fraction > 0]
