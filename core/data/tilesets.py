"""Tagged tiles held in memory for training: stretched pixels quantised to uint8, and their tags.

uint8 storage keeps a few thousand 256 px tiles within a few hundred MB; tiles on the raster's
edge are padded by reflection to the full tile size and their padding marked invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.data.magnitude import PairCue
from core.data.tiles import Tile
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch


@dataclass
class TileSet:
    """Tiles of one or more pairs.

    Attributes:
        before: uint8 ``[N, bands, T, T]``, stretched values x 255.
        after: same for the second date.
        valid: bool ``[N, T, T]``: pixels with data on both dates.
        labels: int8 ``[N]``: 1 changed, 0 unchanged.
        names: ``pair#tile_id`` of each tile.
        windows: the pixel window of each tile in its pair.
        cva_threshold: float32 ``[N]``: Otsu's threshold of the change magnitude over the whole
            pair of each tile (:func:`core.data.magnitude.pair_threshold`); None when the tiles
            were read without that pass (their own pixels then stand in for the pair's).
        cva_standard: float32 ``[N, 5]``, one-band pairs only: the pair's standardisation
            (:attr:`core.data.magnitude.Standardisation.values`) and Otsu's threshold of the
            standardised magnitude; None for pairs of several bands or without that pass.
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    names: list[str] = field(default_factory=list)
    windows: list = field(default_factory=list)
    cva_threshold: np.ndarray | None = None
    cva_standard: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def tile_size(self) -> int:
        """Edge of the (square) tiles in pixels."""
        return int(self.before.shape[-1])

    @property
    def counts(self) -> dict[str, int]:
        """Number of changed and unchanged tiles."""
        positives = int((self.labels == 1).sum())
        return {"changed": positives, "unchanged": len(self) - positives}

    @property
    def counts_text(self) -> str:
        """The counts in words: ``8 changed, 10 unchanged``."""
        counts = self.counts
        return f"{counts['changed']} changed, {counts['unchanged']} unchanged"

    def subset(self, index: np.ndarray | list[int]) -> TileSet:
        """The tiles at ``index``."""
        index = np.asarray(index, dtype=np.int64)
        return TileSet(
            self.before[index],
            self.after[index],
            self.valid[index],
            self.labels[index],
            [self.names[i] for i in index],
            [self.windows[i] for i in index],
            None if self.cva_threshold is None else self.cva_threshold[index],
            None if self.cva_standard is None else self.cva_standard[index],
        )

    @staticmethod
    def concat(sets: list[TileSet]) -> TileSet:
        """Pool several tile sets (same bands and tile size)."""
        return TileSet(
            np.concatenate([s.before for s in sets]),
            np.concatenate([s.after for s in sets]),
            np.concatenate([s.valid for s in sets]),
            np.concatenate([s.labels for s in sets]),
            [n for s in sets for n in s.names],
            [w for s in sets for w in s.windows],
            _pooled([s.cva_threshold for s in sets]),
            _pooled([s.cva_standard for s in sets]),
        )


def _pooled(parts: list[np.ndarray | None]) -> np.ndarray | None:
    """The parts concatenated; None when any of them is missing."""
    return None if any(p is None for p in parts) else np.concatenate(parts)


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Pad the last two axes to ``size`` by reflection (edge mode when too small to reflect)."""
    rows, cols = array.shape[-2:]
    pad = [(0, 0)] * (array.ndim - 2) + [(0, size - rows), (0, size - cols)]
    mode = "reflect" if rows > size - rows and cols > size - cols else "edge"
    return np.pad(array, pad, mode=mode)


def load_tiles(
    pair: RasterPair,
    stretch: PairStretch,
    tiles: list[Tile],
    labels: list[int],
    size: int,
    name: str,
    cue: PairCue | None = None,
) -> TileSet:
    """Read, stretch and quantise tiles of a pair.

    Args:
        pair: the open pair.
        stretch: its normalisation.
        tiles: the tiles to read (windows of at most ``size`` pixels).
        labels: the tag (0 or 1) of each tile.
        size: tile edge; smaller edge tiles are padded.
        name: prefix of the tile names.
        cue: the pair's CVA statistics (:func:`core.data.magnitude.pair_cue`), kept for every
            tile; None when they were not measured.
    """
    n, bands = len(tiles), pair.band_count
    before = np.zeros((n, bands, size, size), dtype=np.uint8)
    after = np.zeros_like(before)
    valid = np.zeros((n, size, size), dtype=bool)
    for i, tile in enumerate(tiles):
        data = pair.read(tile.window)
        mask = data.valid
        a = np.where(mask, stretch.before.apply(data.before), 0.0)
        b = np.where(mask, stretch.after.apply(data.after), 0.0)
        before[i] = _pad(np.rint(a * 255), size)
        after[i] = _pad(np.rint(b * 255), size)
        w = tile.window
        valid[i, : w.height, : w.width] = mask
    return TileSet(
        before,
        after,
        valid,
        np.asarray(labels, dtype=np.int8),
        [f"{name}#{t.tile_id}" for t in tiles],
        [t.window for t in tiles],
        None if cue is None else np.full(n, cue.threshold, dtype=np.float32),
        _standard_rows(cue, n),
    )


def _standard_rows(cue: PairCue | None, n: int) -> np.ndarray | None:
    """``TileSet.cva_standard`` for ``n`` tiles of a pair with ``cue``."""
    if cue is None or cue.standard is None:
        return None
    row = np.asarray([*cue.standard.values, cue.standard_threshold], dtype=np.float32)
    return np.tile(row, (n, 1))
