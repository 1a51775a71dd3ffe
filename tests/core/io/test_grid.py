"""Tests of core.io.grid: bounds, map coordinates and pixel area, with and without georeference."""

from __future__ import annotations

import pytest

from core.io.grid import GDAL_DEFAULT_TRANSFORM, UNGEOREFERENCED_DISPLAY, Grid
from core.io.windows import Window

UTM = (500_000.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0)


def test_georeferenced_grid_bounds_and_corners():
    grid = Grid(200, 100, UTM, "EPSG:32633")
    assert grid.georeferenced
    assert grid.display_transform == UTM
    assert grid.bounds() == (500_000.0, 4_599_000.0, 502_000.0, 4_600_000.0)
    assert grid.to_map(0, 0) == (500_000.0, 4_600_000.0)
    assert grid.to_map(200, 100) == (502_000.0, 4_599_000.0)
    assert grid.to_map(0.5, 2.5) == pytest.approx((500_005.0, 4_599_975.0))


def test_pixel_area_in_map_units():
    assert Grid(10, 10, UTM).pixel_area == pytest.approx(100.0)
    assert Grid(10, 10, (0.0, 0.5, 0.0, 0.0, 0.0, -2.0)).pixel_area == pytest.approx(1.0)
    # a rotated grid: the area is the determinant of the 2x2 part
    assert Grid(10, 10, (0.0, 3.0, 1.0, 0.0, 1.0, -3.0)).pixel_area == pytest.approx(10.0)


def test_ungeoreferenced_grid_displays_with_y_pointing_down_as_negative_y():
    grid = Grid(1024, 512)
    assert grid.geotransform == GDAL_DEFAULT_TRANSFORM
    assert not grid.georeferenced
    assert grid.display_transform == UNGEOREFERENCED_DISPLAY
    assert grid.to_map(3, 4) == (3.0, -4.0)
    assert grid.bounds() == (0.0, -512.0, 1024.0, 0.0)
    assert grid.pixel_area == 1.0


def test_a_geotransform_given_as_a_list_still_counts_as_default():
    assert not Grid(5, 5, list(GDAL_DEFAULT_TRANSFORM)).georeferenced  # type: ignore[arg-type]


def test_window_ring_is_closed_and_follows_the_corners():
    grid = Grid(200, 100, UTM)
    ring = grid.window_ring(Window(10, 20, 30, 40))
    assert len(ring) == 5
    assert ring[0] == ring[-1]
    assert ring[0] == (500_100.0, 4_599_800.0)
    assert ring[2] == (500_400.0, 4_599_400.0)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert (max(xs) - min(xs)) * (max(ys) - min(ys)) == pytest.approx(30 * 40 * grid.pixel_area)
