"""Tests of core.io.windows: window arithmetic and covering a raster with sliding windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.io.windows import Window, axis_starts, block_windows, sliding_windows


def test_ends_and_slices_cut_the_window_out_of_an_array():
    window = Window(col=2, row=1, width=3, height=2)
    assert (window.col_end, window.row_end) == (5, 3)
    array = np.arange(6 * 8).reshape(6, 8)
    cut = array[window.slices]
    assert cut.shape == (2, 3)
    assert cut[0, 0] == array[1, 2]
    assert cut[-1, -1] == array[2, 4]


def test_intersection_of_overlapping_windows():
    a = Window(0, 0, 10, 10)
    b = Window(5, 7, 10, 10)
    assert a.intersection(b) == Window(5, 7, 5, 3)
    assert b.intersection(a) == Window(5, 7, 5, 3)


def test_intersection_with_a_contained_window_is_that_window():
    outer, inner = Window(0, 0, 100, 100), Window(10, 20, 5, 6)
    assert outer.intersection(inner) == inner


@pytest.mark.parametrize(
    "other",
    [
        Window(10, 0, 5, 5),  # touches the right edge
        Window(0, 10, 5, 5),  # touches the bottom edge
        Window(20, 20, 5, 5),  # far away
        Window(-5, 0, 5, 10),  # touches the left edge
    ],
)
def test_intersection_of_touching_or_disjoint_windows_is_none(other):
    assert Window(0, 0, 10, 10).intersection(other) is None


def test_relative_to_shifts_offsets_and_keeps_the_size():
    inner = Window(30, 40, 10, 20)
    assert inner.relative_to(Window(25, 10, 100, 100)) == Window(5, 30, 10, 20)
    assert inner.relative_to(inner) == Window(0, 0, 10, 20)


def test_relative_to_cuts_the_same_pixels_from_the_outer_array():
    full = np.arange(50 * 60).reshape(50, 60)
    outer, inner = Window(10, 5, 30, 40), Window(15, 12, 7, 9)
    outer_array = full[outer.slices]
    np.testing.assert_array_equal(outer_array[inner.relative_to(outer).slices], full[inner.slices])


@pytest.mark.parametrize(
    ("length", "size", "stride", "expected"),
    [
        (100, 256, 256, [0]),  # shorter than one window
        (256, 256, 256, [0]),  # exactly one window
        (100, 50, 50, [0, 50]),  # exact multiple
        (100, 40, 40, [0, 40, 60]),  # last window moved back to end at the edge
        (11, 4, 3, [0, 3, 6, 7]),  # overlap, last window moved back
        (10, 4, 3, [0, 3, 6]),  # overlap, last window ends exactly at the edge
        (1, 1, 1, [0]),
        (5, 1, 1, [0, 1, 2, 3, 4]),
    ],
)
def test_axis_starts(length, size, stride, expected):
    assert axis_starts(length, size, stride) == expected


@pytest.mark.parametrize(
    ("length", "size", "stride"), [(0, 4, 4), (10, 0, 4), (10, 4, 0), (-1, 4, 4)]
)
def test_axis_starts_refuses_non_positive_arguments(length, size, stride):
    with pytest.raises(ValueError, match="positive"):
        axis_starts(length, size, stride)


def test_sliding_windows_of_a_raster_smaller_than_a_window_is_the_raster():
    assert sliding_windows(30, 20, 64, 32) == [Window(0, 0, 30, 20)]


def test_sliding_windows_are_row_major():
    windows = sliding_windows(100, 60, 50, 50)
    assert [(w.col, w.row) for w in windows] == [(0, 0), (50, 0), (0, 10), (50, 10)]


@settings(max_examples=100, deadline=None)
@given(
    width=st.integers(1, 120),
    height=st.integers(1, 120),
    size=st.integers(1, 48),
    data=st.data(),
)
def test_sliding_windows_cover_every_pixel_within_bounds(width, height, size, data):
    stride = data.draw(st.integers(1, size), label="stride")
    windows = sliding_windows(width, height, size, stride)
    hits = np.zeros((height, width), dtype=np.int32)
    for w in windows:
        assert w.col >= 0 and w.row >= 0
        assert w.col_end <= width and w.row_end <= height
        # no partial windows: every window is full-sized unless the raster is smaller
        assert (w.width, w.height) == (min(size, width), min(size, height))
        hits[w.slices] += 1
    assert hits.min() >= 1
    assert len(set(windows)) == len(windows)


def test_block_windows_clip_the_edges():
    assert block_windows(100, 60, 50) == [
        Window(0, 0, 50, 50),
        Window(50, 0, 50, 50),
        Window(0, 50, 50, 10),
        Window(50, 50, 50, 10),
    ]
    assert block_windows(30, 20, 64) == [Window(0, 0, 30, 20)]


@pytest.mark.parametrize(("width", "height", "size"), [(0, 5, 4), (5, 0, 4), (5, 5, 0)])
def test_block_windows_refuse_non_positive_arguments(width, height, size):
    with pytest.raises(ValueError, match="positive"):
        block_windows(width, height, size)


@settings(max_examples=100, deadline=None)
@given(width=st.integers(1, 150), height=st.integers(1, 150), size=st.integers(1, 64))
def test_block_windows_cover_every_pixel_exactly_once(width, height, size):
    hits = np.zeros((height, width), dtype=np.int32)
    for w in block_windows(width, height, size):
        assert w.width > 0 and w.height > 0
        assert w.col_end <= width and w.row_end <= height
        hits[w.slices] += 1
    assert (hits == 1).all()
