"""Writing outputs as tiled, compressed GeoTIFF on A's grid, window by window.

The file is written under a temporary name and renamed when complete, so a failure or cancel
never leaves a file that looks finished.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from osgeo import gdal

from core.errors import KdmsiError
from core.grid import Grid
from core.windows import Window

gdal.UseExceptions()

_TYPES = {np.dtype("float32"): gdal.GDT_Float32, np.dtype("uint8"): gdal.GDT_Byte}


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an existing output (unless ``overwrite``) or a folder that cannot be written.

    Raises:
        KdmsiError: naming the path and what to do.
    """
    if path.exists() and not overwrite:
        raise KdmsiError(f"{path} already exists; pass --overwrite or choose another output.")
    folder = path.parent if str(path.parent) else Path()
    if not folder.is_dir():
        raise KdmsiError(f"The output folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK):
        raise KdmsiError(f"The output folder {folder} is not writable; choose another output.")


class GeoTiffWriter:
    """Context manager writing a single- or multi-band GeoTIFF window by window.

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
    ) -> None:
        self.path = Path(path)
        check_output(self.path, overwrite)
        self.grid = grid
        self.dtype = np.dtype(dtype)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        predictor = "3" if self.dtype.kind == "f" else "2"
        self._ds = gdal.GetDriverByName("GTiff").Create(
            str(self.partial),
            grid.width,
            grid.height,
            bands,
            _TYPES[self.dtype],
            options=["TILED=YES", "COMPRESS=DEFLATE", f"PREDICTOR={predictor}", "BIGTIFF=IF_SAFER"],
        )
        if grid.georeferenced:
            self._ds.SetGeoTransform(grid.geotransform)
        if grid.crs_wkt:
            self._ds.SetProjection(grid.crs_wkt)
        if nodata is not None:
            for index in range(1, bands + 1):
                self._ds.GetRasterBand(index).SetNoDataValue(nodata)

    def write(self, window: Window, array: np.ndarray, band: int = 1) -> None:
        """Write a ``[rows, cols]`` array at ``window`` into ``band`` (1-based)."""
        self._ds.GetRasterBand(band).WriteArray(
            array.astype(self.dtype, copy=False), window.col, window.row
        )

    def set_description(self, band: int, text: str) -> None:
        """Name a band (shown by QGIS and gdalinfo)."""
        self._ds.GetRasterBand(band).SetDescription(text)

    def set_metadata(self, items: dict[str, str]) -> None:
        """Attach dataset metadata items (e.g. the threshold that was chosen)."""
        self._ds.SetMetadata({k: str(v) for k, v in items.items()})

    def __enter__(self) -> GeoTiffWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            self._ds.FlushCache()
        finally:
            self._ds = None
        if exc_type is None:
            if self.path.exists():
                self.path.unlink()
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)
