"""Opening a before/after raster pair, aligning B onto A's grid and reading windows of both.

Nothing here loads a whole raster: reads are per window (or decimated, for statistics).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.io.bands import check_bands, default_bands
from core.io.grid import Grid
from core.io.windows import Window

gdal.UseExceptions()
osr.UseExceptions()


def open_raster(path: Path | str, role: str = "raster") -> gdal.Dataset:
    """Open a raster read-only with a clear error for every way it can fail.

    Args:
        path: any file GDAL reads (GeoTIFF, PNG, JPEG, VRT...).
        role: how to call the file in messages ("before raster", "label"...).

    Raises:
        KdmsiError: when the file is missing, unreadable or not a raster.
    """
    path = Path(path)
    if not path.exists():
        raise KdmsiError(f"The {role} {path} does not exist; check the path.")
    if path.is_dir():
        raise KdmsiError(f"The {role} {path} is a folder; give the path of a raster file.")
    if not os.access(path, os.R_OK):
        raise KdmsiError(f"The {role} {path} is not readable; check its permissions.")
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise KdmsiError(
            f"The {role} {path} cannot be read as a raster ({_first_line(exc)}); "
            "give a GeoTIFF, PNG or other GDAL raster."
        ) from exc
    if ds is None or ds.RasterCount == 0:
        raise KdmsiError(f"The {role} {path} has no raster bands; give a GDAL raster file.")
    try:  # corrupt GeoTIFF keys fail here, not at open
        ds.GetGeoTransform(can_return_null=False)
        ds.GetProjection()
    except RuntimeError as exc:
        raise KdmsiError(
            f"The georeferencing of the {role} {path} cannot be read ({_first_line(exc)}); "
            "the file is probably corrupt: copy or export it again."
        ) from exc
    return ds


def read_failure(path: Path | str, role: str, exc: BaseException) -> KdmsiError:
    """The user error for a raster that opened but whose pixels GDAL cannot read.

    Args:
        path: the raster.
        role: how to call it ("before raster", "label"...).
        exc: GDAL's error (its first line is quoted).
    """
    return KdmsiError(
        f"The {role} {path} cannot be read ({_first_line(exc)}); it is probably truncated or "
        "corrupt: copy or export it again."
    )


def grid_of(ds: gdal.Dataset) -> Grid:
    """The :class:`Grid` (size, geotransform, CRS) of an open dataset."""
    return Grid(
        width=ds.RasterXSize,
        height=ds.RasterYSize,
        geotransform=tuple(ds.GetGeoTransform(can_return_null=False)),
        crs_wkt=ds.GetProjection() or "",
    )


def same_crs(wkt_a: str, wkt_b: str) -> bool:
    """True when two WKT strings describe the same CRS (both empty counts as same)."""
    if not wkt_a or not wkt_b:
        return wkt_a == wkt_b
    a, b = osr.SpatialReference(wkt=wkt_a), osr.SpatialReference(wkt=wkt_b)
    return bool(a.IsSame(b))


def same_grid(a: Grid, b: Grid) -> bool:
    """True when two grids have the same size, CRS and (to 1e-6 pixel) geotransform."""
    if (a.width, a.height) != (b.width, b.height) or not same_crs(a.crs_wkt, b.crs_wkt):
        return False
    tol = 1e-6 * max(abs(a.geotransform[1]), abs(a.geotransform[5]), 1e-12)
    return all(abs(x - y) <= tol for x, y in zip(a.geotransform, b.geotransform))


@dataclass
class PairWindow:
    """Raw pixel values of one window of a pair.

    Attributes:
        before: float32 array ``[bands, rows, cols]`` of A.
        after: float32 array ``[bands, rows, cols]`` of B on A's grid.
        valid: bool array ``[rows, cols]``; False where either date is nodata or outside B.
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray


@dataclass
class RasterPair:
    """Two co-registered rasters read window by window on A's grid.

    Use :meth:`open`; close with :meth:`close` or a ``with`` block.
    """

    before_path: Path
    after_path: Path
    bands: tuple[int, ...]
    grid: Grid
    aligned: bool
    _before: gdal.Dataset = field(repr=False)
    _after: gdal.Dataset = field(repr=False)

    @classmethod
    def open(
        cls,
        before: Path | str,
        after: Path | str,
        bands: tuple[int, ...] | None = None,
        callbacks: Callbacks | None = None,
    ) -> RasterPair:
        """Open a pair, check its bands and bring B onto A's grid when they differ.

        Args:
            before: path of A (its grid is the grid of every output).
            after: path of B.
            bands: 1-based band indices used from both; default the first three.
            callbacks: receives a log line when B is warped.

        Raises:
            KdmsiError: for unreadable files, missing bands, no overlap, or ungeoreferenced
                images of different sizes.
        """
        callbacks = callbacks or Callbacks()
        before, after = Path(before), Path(after)
        ds_a, ds_b = open_raster(before, "before raster"), open_raster(after, "after raster")
        bands = bands or default_bands(min(ds_a.RasterCount, ds_b.RasterCount))
        check_bands(bands, ds_a.RasterCount, str(before))
        check_bands(bands, ds_b.RasterCount, str(after))
        grid_a, grid_b = grid_of(ds_a), grid_of(ds_b)
        aligned_b = _align(ds_b, grid_a, grid_b, before, after, callbacks)
        return cls(before, after, bands, grid_a, aligned_b is not ds_b, ds_a, aligned_b)

    def __enter__(self) -> RasterPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the GDAL datasets."""
        self._before = None
        self._after = None

    @property
    def band_count(self) -> int:
        """Number of bands read from each date."""
        return len(self.bands)

    @property
    def data_types(self) -> tuple[str, str]:
        """GDAL data type names of the first chosen band of A and B (e.g. ``Byte``)."""
        return tuple(  # type: ignore[return-value]
            gdal.GetDataTypeName(ds.GetRasterBand(self.bands[0]).DataType)
            for ds in (self._before, self._after)
        )

    def read(self, window: Window, out_size: tuple[int, int] | None = None) -> PairWindow:
        """Read one window of both dates.

        Args:
            window: pixels on A's grid.
            out_size: ``(cols, rows)`` to resample to (nearest/overviews), for statistics.

        Returns:
            The pixel values and the validity mask.
        """
        try:
            a, valid_a = _read(self._before, self.bands, window, out_size)
        except RuntimeError as exc:
            raise read_failure(self.before_path, "before raster", exc) from exc
        try:
            b, valid_b = _read(self._after, self.bands, window, out_size)
        except RuntimeError as exc:
            raise read_failure(self.after_path, "after raster", exc) from exc
        return PairWindow(a, b, valid_a & valid_b)


def _read(
    ds: gdal.Dataset, bands: tuple[int, ...], window: Window, out_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Read bands and their combined validity mask of one dataset window."""
    cols, rows = out_size or (window.width, window.height)
    args = (window.col, window.row, window.width, window.height)
    data = np.empty((len(bands), rows, cols), dtype=np.float32)
    valid = np.ones((rows, cols), dtype=bool)
    for i, index in enumerate(bands):
        band = ds.GetRasterBand(index)
        data[i] = band.ReadAsArray(*args, buf_xsize=cols, buf_ysize=rows)
        if band.GetMaskFlags() != gdal.GMF_ALL_VALID:
            valid &= band.GetMaskBand().ReadAsArray(*args, buf_xsize=cols, buf_ysize=rows) > 0
    valid &= np.isfinite(data).all(axis=0)
    return data, valid


def _align(
    ds_b: gdal.Dataset, grid_a: Grid, grid_b: Grid, path_a: Path, path_b: Path, callbacks: Callbacks
) -> gdal.Dataset:
    """Return B itself when it is on A's grid, else a warped VRT of B on A's grid."""
    if same_grid(grid_a, grid_b):
        return ds_b
    if not (grid_a.georeferenced and grid_b.georeferenced):
        if (grid_a.width, grid_a.height) == (grid_b.width, grid_b.height):
            if grid_a.georeferenced != grid_b.georeferenced:
                callbacks.warning(
                    f"Only one of {path_a.name} and {path_b.name} is georeferenced; "
                    "pairing them pixel by pixel."
                )
            return ds_b
        raise KdmsiError(
            f"{path_a} is {grid_a.width}x{grid_a.height} and {path_b} is "
            f"{grid_b.width}x{grid_b.height} without georeferencing to align them; "
            "give images of the same size or georeferenced rasters."
        )
    if not grid_a.crs_wkt or not grid_b.crs_wkt:
        raise KdmsiError(
            f"{path_a if not grid_a.crs_wkt else path_b} has a geotransform but no CRS; "
            "assign its CRS (e.g. gdal_edit.py -a_srs) before pairing."
        )
    if not _overlaps(grid_a, grid_b):
        raise KdmsiError(
            f"{path_a} and {path_b} do not overlap; give two rasters of the same place."
        )
    callbacks.info(
        f"{path_b.name} is on a different grid or CRS than {path_a.name}; "
        "warping it onto the before raster's grid (bilinear)."
    )
    return gdal.Warp(
        "",
        ds_b,
        format="VRT",
        dstSRS=grid_a.crs_wkt,
        outputBounds=grid_a.bounds(),
        width=grid_a.width,
        height=grid_a.height,
        resampleAlg="bilinear",
        dstAlpha=True,
    )


def _overlaps(grid_a: Grid, grid_b: Grid) -> bool:
    """True when B's footprint, transformed into A's CRS, intersects A's extent."""
    srs_a, srs_b = (
        osr.SpatialReference(wkt=grid_a.crs_wkt),
        osr.SpatialReference(wkt=grid_b.crs_wkt),
    )
    for srs in (srs_a, srs_b):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(srs_b, srs_a)
    steps = [i / 4 for i in range(5)]
    edge = [(f * grid_b.width, g * grid_b.height) for f in steps for g in steps]
    try:
        points = [transform.TransformPoint(*grid_b.to_map(c, r))[:2] for c, r in edge]
    except RuntimeError:
        return False
    ax0, ay0, ax1, ay1 = grid_a.bounds()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs) < ax1 and max(xs) > ax0 and min(ys) < ay1 and max(ys) > ay0


def _first_line(exc: BaseException) -> str:
    """First line of an exception message, without a trailing period."""
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
