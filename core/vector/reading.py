"""Read the probability raster chunk by chunk, the next chunk on a background thread.

Reading (decoding the GeoTIFF's compressed blocks) is about half of vectorizing a raster whose
change is sparse, and labelling the change of a chunk is the other half; GDAL releases Python's
lock while it reads, so reading chunk ``i + 1`` while chunk ``i`` is labelled hides most of one
behind the other. Only the reader thread touches the source dataset while chunks are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

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


def _load(source: Source, chunk: tuple[int, int], use_mask: bool) -> Chunk:
    """Read one chunk (first row, row count) and, with ``use_mask``, its mask."""
    row, rows = chunk
    values = source.read(row, rows)
    kept = None
    if use_mask and source.band.GetMaskFlags() != gdal.GMF_ALL_VALID:
        kept = source.band.GetMaskBand().ReadAsArray(0, row, source.width, rows) > 0
    return Chunk(row, values, kept)


def read_ahead(source: Source, chunks: list[tuple[int, int]], use_mask: bool) -> Iterator[Chunk]:
    """Yield the ``chunks`` (first row, row count) in order, reading the next one meanwhile.

    At most two chunks are in memory. Leaving the loop early (a cancel) waits for the read
    under way and reads no further; a read error is raised where its chunk is yielded.
    """
    if not chunks:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="kdmsi-read") as pool:
        pending: Future[Chunk] = pool.submit(_load, source, chunks[0], use_mask)
        for following in chunks[1:]:
            current = pending.result()
            pending = pool.submit(_load, source, following, use_mask)
            yield current
        yield pending.result()
