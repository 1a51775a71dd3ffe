"""Writing outputs as tiled, compressed GeoTIFF on A's grid, window by window.

The file is written under a temporary name, given internal overviews (:mod:`core.io.overviews`)
once every block is written, and renamed when complete, so a failure or cancel never leaves a
file that looks finished.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

from core.errors import KdmsiError
from core.io.block_maxima import BlockMaxima
from core.io.grid import Grid
from core.io.outputs import check_free_space, check_writable
from core.io.overviews import DEFLATE_LEVEL, build_overviews, overview_error, overview_pixels
from core.io.windows import Window

gdal.UseExceptions()

_TYPES = {np.dtype("float32"): gdal.GDT_Float32, np.dtype("uint8"): gdal.GDT_Byte}


def check_output(path: Path, overwrite: bool, needed: int = 0) -> None:
    """Refuse an existing output (unless ``overwrite``), an unwritable folder or a full disk.

    Args:
        path: the output file.
        overwrite: an existing file may be replaced.
        needed: estimated bytes the output takes (0: do not check the free space).

    Raises:
        KdmsiError: naming the path and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise KdmsiError(f"The output {path} is a folder; give a file name.")
    if path.exists() and not overwrite:
        raise KdmsiError(f"{path} already exists; pass --overwrite or choose another output.")
    folder = path.parent if str(path.parent) else Path()
    if not folder.is_dir():
        raise KdmsiError(f"The output folder {folder} does not exist; create it first.")
    check_writable(folder, f"the output {path}")
    if needed:
        check_free_space(folder, needed, f"the output {path}")


def geotiff_bytes(
    grid: Grid, bands: int = 1, dtype: np.dtype | type = np.float32, overviews: bool = True
) -> int:
    """Upper estimate of a GeoTIFF's size on disk: its uncompressed pixels plus 1 %.

    DEFLATE usually makes the file smaller, but noisy probabilities compress little, so the check
    before writing uses the uncompressed size; ``overviews`` adds their pixels (under a third).
    """
    pixels = int(grid.width) * int(grid.height)
    if overviews:
        pixels += overview_pixels(grid.width, grid.height)
    pixels *= int(bands)
    return int(pixels * np.dtype(dtype).itemsize * 1.01) + 65536


def _write_error(path: Path, exc: BaseException) -> KdmsiError:
    """The user error for a GeoTIFF that GDAL failed to create or write."""
    return KdmsiError(
        f"Writing {path} failed ({str(exc).strip() or type(exc).__name__}); "
        "check the free disk space and the folder's permissions."
    )


class GeoTiffWriter:
    """Context manager writing a single- or multi-band GeoTIFF window by window.

    On a clean exit the blocks are flushed, internal overviews are built (unless
    ``overviews=False``; none for a raster whose smaller side is at most 256 px) and the file is
    renamed into place.

    Example:
        >>> with GeoTiffWriter(path, grid, dtype=np.float32, nodata=-1) as out:
        ...     out.write(window, array)
    """

    def __init__(
        self,
        path: Path | str,
        grid: Grid,
        dtype: np.dtype | type = np.float32,
        bands: int = 1,
        nodata: float | None = None,
        overwrite: bool = False,
        overviews: bool = True,
    ) -> None:
        """Create the partial file.

        Args:
            path: the output file (written as ``.<name>.partial`` beside it until complete).
            grid: the output's size, geotransform and CRS.
            dtype: ``float32`` or ``uint8``.
            bands: number of bands.
            nodata: nodata value of every band (None: none); overviews' AVERAGE leaves it out.
            overwrite: an existing file may be replaced.
            overviews: build internal overviews before renaming (False for throwaway files).

        Raises:
            KdmsiError: when the output is refused (:func:`check_output`) or cannot be created.
        """
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.overviews = overviews
        check_output(self.path, overwrite, geotiff_bytes(grid, bands, self.dtype, overviews))
        self.grid = grid
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        predictor = "3" if self.dtype.kind == "f" else "2"
        try:
            self._ds = gdal.GetDriverByName("GTiff").Create(
                str(self.partial),
                grid.width,
                grid.height,
                bands,
                _TYPES[self.dtype],
                options=[
                    "TILED=YES",
                    "COMPRESS=DEFLATE",
                    f"ZLEVEL={DEFLATE_LEVEL}",
                    f"PREDICTOR={predictor}",
                    "BIGTIFF=IF_SAFER",
                ],
            )
        except RuntimeError as exc:
            raise _write_error(self.path, exc) from exc
        if grid.georeferenced:
            self._ds.SetGeoTransform(grid.geotransform)
        if grid.crs_wkt:
            self._ds.SetProjection(grid.crs_wkt)
        if nodata is not None:
            for index in range(1, bands + 1):
                self._ds.GetRasterBand(index).SetNoDataValue(nodata)
        first = self._ds.GetRasterBand(1)
        self._maxima = BlockMaxima(first) if self.dtype.kind == "f" else None

    def write(self, window: Window, array: np.ndarray, band: int = 1) -> None:
        """Write a ``[rows, cols]`` array at ``window`` into ``band`` (1-based).

        Raises:
            KdmsiError: when GDAL cannot write (e.g. the disk filled up).
        """
        array = array.astype(self.dtype, copy=False)
        try:
            self._ds.GetRasterBand(band).WriteArray(array, window.col, window.row)
        except RuntimeError as exc:
            raise _write_error(self.path, exc) from exc
        if band == 1 and self._maxima is not None:
            self._maxima.update(window.row, window.col, array)

    def set_description(self, band: int, text: str) -> None:
        """Name a band (shown by QGIS and gdalinfo)."""
        self._ds.GetRasterBand(band).SetDescription(text)

    def set_metadata(self, items: dict[str, str]) -> None:
        """Attach dataset metadata items (e.g. the threshold that was chosen)."""
        self._ds.SetMetadata({k: str(v) for k, v in items.items()})

    def __enter__(self) -> GeoTiffWriter:
        return self

    def _finish(self) -> None:
        """Flush the blocks, build the overviews from the file, store the blocks' maxima.

        Raises:
            KdmsiError: when GDAL cannot write the blocks or build the overviews.
        """
        try:
            self._ds.FlushCache()
        except RuntimeError as error:
            raise _write_error(self.path, error) from error
        if self.overviews:
            try:
                build_overviews(self._ds, self.dtype)
                self._ds.FlushCache()
            except RuntimeError as error:
                raise overview_error(self.path, error) from error
        if self._maxima is not None:  # every block is in place: record where they lie
            self._maxima.attach(self._ds.GetRasterBand(1))

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                self._finish()
        except BaseException:
            self._ds = None  # closes the file before it is removed
            self.partial.unlink(missing_ok=True)
            raise
        self._ds = None
        if exc_type is None:
            if self.path.exists():
                self.path.unlink()
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)
