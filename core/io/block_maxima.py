"""Each block's largest value, kept in the GeoTIFF, so vectorize can skip blocks without change.

Vectorizing a probability raster whose change is sparse mostly decodes blocks that hold no pixel
above the threshold. :class:`BlockMaxima` follows the writes of a float32 output and records, for
every block of band 1, an upper bound of its largest value in 1/255 steps (one byte a block:
``floor(max * 255) + 1``, so the bound always lies above the value; 255 means "unknown, read it";
0 a block with nothing but NaN or negative nodata). It is stored, compressed, in the band's
``KDMSI`` metadata domain (gdalinfo and QGIS show the default domain only), with a digest of
where every block lies in the file. A tool that rewrites the raster (gdal_translate, a raster
calculator, an edit in place) moves or resizes the blocks, so the digest no longer matches and
:func:`read_block_maxima` returns None: the raster is read whole, as any other raster.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

import numpy as np
from osgeo import gdal

DOMAIN = "KDMSI"
KEY = "BLOCK_MAXIMA"
DIGEST_KEY = "BLOCK_LAYOUT"
UNKNOWN = 255


class BlockMaxima:
    """The largest value written into each block of one band (NaN ignored)."""

    def __init__(self, band: gdal.Band) -> None:
        """Follow the writes into ``band`` (its block size and its size are read from it)."""
        self.block_x, self.block_y = band.GetBlockSize()
        self.blocks_x = -(-band.XSize // self.block_x)
        self.blocks_y = -(-band.YSize // self.block_y)
        self.maxima = np.full((self.blocks_y, self.blocks_x), np.nan)

    def update(self, row: int, col: int, array: np.ndarray) -> None:
        """Take the values ``array`` written with its top left pixel at ``row, col``.

        Works on the array in place (no copy of it): the largest value of each row within each
        block, then of those rows.
        """
        rows, cols = array.shape
        if not rows or not cols:
            return
        bx0, bx1 = col // self.block_x, (col + cols - 1) // self.block_x + 1
        starts = np.maximum(np.arange(bx0, bx1) * self.block_x - col, 0)
        for by in range(row // self.block_y, (row + rows - 1) // self.block_y + 1):
            top = max(by * self.block_y - row, 0)
            end = min((by + 1) * self.block_y - row, rows)
            per_row = np.fmax.reduceat(array[top:end], starts, axis=1)
            largest = np.fmax.reduce(per_row, axis=0)
            np.fmax(self.maxima[by, bx0:bx1], largest, out=self.maxima[by, bx0:bx1])

    def bounds(self) -> np.ndarray:
        """Per block, ``floor(max * 255) + 1`` clipped to 0..255 (0: nothing but NaN)."""
        with np.errstate(invalid="ignore"):
            steps = np.floor(np.nan_to_num(self.maxima, nan=-1.0) * 255.0) + 1.0
        return np.clip(steps, 0, UNKNOWN).astype(np.uint8)

    def attach(self, band: gdal.Band) -> None:
        """Store the bounds and the layout digest in ``band`` (call once every block is flushed)."""
        packed = base64.b64encode(zlib.compress(self.bounds().tobytes(), 6)).decode("ascii")
        band.SetMetadataItem(KEY, packed, DOMAIN)
        band.SetMetadataItem(DIGEST_KEY, layout_digest(band), DOMAIN)


def layout_digest(band: gdal.Band) -> str:
    """A digest of the offset and size in the file of every block of ``band`` (full resolution)."""
    block_x, block_y = band.GetBlockSize()
    digest = hashlib.sha256(f"{band.XSize}x{band.YSize}/{block_x}x{block_y};".encode())
    for by in range(-(-band.YSize // block_y)):
        for bx in range(-(-band.XSize // block_x)):
            offset = band.GetMetadataItem(f"BLOCK_OFFSET_{bx}_{by}", "TIFF")
            size = band.GetMetadataItem(f"BLOCK_SIZE_{bx}_{by}", "TIFF")
            digest.update(f"{offset},{size};".encode())
    return digest.hexdigest()


def read_block_maxima(band: gdal.Band) -> np.ndarray | None:
    """The stored bounds ``[blocks_y, blocks_x]`` (uint8), or None when absent or stale."""
    packed = band.GetMetadataItem(KEY, DOMAIN)
    stored_digest = band.GetMetadataItem(DIGEST_KEY, DOMAIN)
    if not packed or not stored_digest or band.DataType != gdal.GDT_Float32:
        return None
    block_x, block_y = band.GetBlockSize()
    shape = (-(-band.YSize // block_y), -(-band.XSize // block_x))
    try:
        bounds = np.frombuffer(zlib.decompress(base64.b64decode(packed)), np.uint8)
    except (ValueError, zlib.error):
        return None
    if bounds.size != shape[0] * shape[1] or layout_digest(band) != stored_digest:
        return None
    return bounds.reshape(shape)


def may_reach(bounds: np.ndarray, threshold: float) -> np.ndarray:
    """Blocks that may hold a value ``>= threshold``: all but those whose bound is at most it."""
    return (bounds == UNKNOWN) | (bounds.astype(np.float64) / 255.0 > threshold)
