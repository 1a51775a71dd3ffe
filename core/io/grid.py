"""The pixel grid of a raster: size, geotransform and CRS, and the geometry of its windows."""

from __future__ import annotations

from dataclasses import dataclass

from core.io.windows import Window

# GDAL's geotransform for a raster without georeferencing is (0, 1, 0, 0, 0, 1). QGIS shows such
# rasters with y pointing down as negative map y, so tile polygons use this flipped transform.
UNGEOREFERENCED_DISPLAY = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
GDAL_DEFAULT_TRANSFORM = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Grid:
    """Size and georeferencing of a raster; every output of a pair is written on A's grid.

    Attributes:
        width: columns.
        height: rows.
        geotransform: GDAL geotransform, or :data:`GDAL_DEFAULT_TRANSFORM` when absent.
        crs_wkt: CRS as WKT, empty when the raster has none.
    """

    width: int
    height: int
    geotransform: tuple[float, float, float, float, float, float] = GDAL_DEFAULT_TRANSFORM
    crs_wkt: str = ""

    @property
    def georeferenced(self) -> bool:
        """True when the raster has a real geotransform."""
        return tuple(self.geotransform) != GDAL_DEFAULT_TRANSFORM

    @property
    def display_transform(self) -> tuple[float, float, float, float, float, float]:
        """Geotransform used for vector geometry (y flipped for ungeoreferenced images)."""
        return self.geotransform if self.georeferenced else UNGEOREFERENCED_DISPLAY

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in map units squared (1 for ungeoreferenced images)."""
        gt = self.display_transform
        return abs(gt[1] * gt[5] - gt[2] * gt[4])

    def to_map(self, col: float, row: float) -> tuple[float, float]:
        """Map coordinates of a pixel corner (``col``, ``row`` may be fractional)."""
        gt = self.display_transform
        return gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]

    def window_ring(self, window: Window) -> list[tuple[float, float]]:
        """Closed ring of the window's four corners in map coordinates."""
        corners = [
            (window.col, window.row),
            (window.col_end, window.row),
            (window.col_end, window.row_end),
            (window.col, window.row_end),
            (window.col, window.row),
        ]
        return [self.to_map(c, r) for c, r in corners]

    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the whole raster in map coordinates."""
        ring = self.window_ring(Window(0, 0, self.width, self.height))
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        return min(xs), min(ys), max(xs), max(ys)
