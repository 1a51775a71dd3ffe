"""Read the probability raster chunk by chunk, the next chunk on a background thread.

Reading (decoding the GeoTIFF's compressed blocks) is about half of vectorizing a raster whose
change is sparse, and labelling the change of a chunk is the other half; GDAL releases Python's
lock while it reads, so reading chunk ``i + 1`` while chunk ``i`` is labelled hides most of one
behind the other. Only the reader thread touches the source dataset while chunks are read.

A raster that ``detect`` wrote carries each block's largest value
(:mod:`core.io.block_maxima`); blocks that cannot reach the threshold are then not read at all
(their pixels read as NaN, never change), so sparse change costs little more than its own blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from core.io.block_maxima import may_reach, read_block_maxima
from core.vector.polygonize import Source


@dataclass
class Chunk:
    """Full rows of the source as stored.

    Attributes:
        row: the first row.
        values: the band's values (rows x width, not scaled).
        kept: where the band's mask keeps a pixel (rows x width), or None when it is not read
            (every pixel valid, or a mask that cannot hide a pixel above the threshold).
    """

    row: int
    values: np.ndarray
    kept: np.ndarray | None

    def valid(self, col: int, end: int) -> np.ndarray:
        """Finite values the mask keeps, in columns ``col..end``."""
        valid = np.isfinite(self.values[:, col:end])
        if self.kept is not None:
            valid &= self.kept[:, col:end]
        return valid


def blocks_to_read(source: Source, threshold: float) -> np.ndarray | None:
    """Per block of the source, whether it may hold a value at or above ``threshold``.

    None where every block must be read: no stored maxima (another tool wrote the raster, or it
    was changed since), scaled values, or no block that can be skipped.
    """
    bounds = read_block_maxima(source.band) if source.divisor == 1.0 else None
    if bounds is None:
        return None
    reach = may_reach(bounds, threshold)
    return None if reach.all() else reach


def _block_runs(
    reach: np.ndarray, block: tuple[int, int], chunk: tuple[int, int], width: int
) -> Iterator[tuple[int, int, int, int]]:
    """``(row, rows, col, cols)`` of the runs of blocks to read in a chunk, row of blocks by row."""
    block_x, block_y = block
    row, rows = chunk
    for by in range(row // block_y, -(-(row + rows) // block_y)):
        top = max(row, by * block_y)
        height = min(row + rows, (by + 1) * block_y) - top
        edges = np.flatnonzero(np.diff(reach[by].astype(np.int8), prepend=0, append=0))
        for first, end in zip(edges[0::2], edges[1::2]):
            col = int(first) * block_x
            yield top, height, col, min(width, int(end) * block_x) - col


def _load(
    source: Source, chunk: tuple[int, int], use_mask: bool, reach: np.ndarray | None
) -> Chunk:
    """Read one chunk (first row, row count) and, with ``use_mask``, its mask.

    With ``reach``, only the blocks it keeps are read; the others hold NaN (and are masked).
    """
    row, rows = chunk
    masked = use_mask and source.band.GetMaskFlags() != gdal.GMF_ALL_VALID
    if reach is None:
        values = source.read(row, rows)
        kept = None
        if masked:
            kept = source.band.GetMaskBand().ReadAsArray(0, row, source.width, rows) > 0
        return Chunk(row, values, kept)
    values = np.full((rows, source.width), np.nan, np.float32)
    kept = np.zeros((rows, source.width), bool) if masked else None
    block = tuple(source.band.GetBlockSize())
    for top, height, col, cols in _block_runs(reach, block, chunk, source.width):
        values[top - row : top - row + height, col : col + cols] = source.band.ReadAsArray(
            col, top, cols, height
        )
        if kept is not None:
            mask = source.band.GetMaskBand().ReadAsArray(col, top, cols, height) > 0
            kept[top - row : top - row + height, col : col + cols] = mask
    return Chunk(row, values, kept)


def read_ahead(
    source: Source,
    chunks: list[tuple[int, int]],
    use_mask: bool,
    reach: np.ndarray | None = None,
) -> Iterator[Chunk]:
    """Yield the ``chunks`` (first row, row count) in order, reading the next one meanwhile.

    At most two chunks are in memory. Leaving the loop early (a cancel) waits for the read
    under way and reads no further; a read error is raised where its chunk is yielded. With
    ``reach`` (:func:`blocks_to_read`), blocks it rules out are not read and hold NaN.
    """
    if not chunks:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="kdmsi-read") as pool:
        pending: Future[Chunk] = pool.submit(_load, source, chunks[0], use_mask, reach)
        for following in chunks[1:]:
            current = pending.result()
            pending = pool.submit(_load, source, following, use_mask, reach)
            yield current
        yield pending.result()
