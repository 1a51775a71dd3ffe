"""Pixel windows and the arithmetic of covering a raster with them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: column and row offsets, width and height."""

    col: int
    row: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        """One past the last column."""
        return self.col + self.width

    @property
    def row_end(self) -> int:
        """One past the last row."""
        return self.row + self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices that cut this window out of a full array."""
        return slice(self.row, self.row_end), slice(self.col, self.col_end)

    def intersection(self, other: Window) -> Window | None:
        """Return the overlap of two windows, or None when they do not overlap."""
        col, row = max(self.col, other.col), max(self.row, other.row)
        col_end, row_end = min(self.col_end, other.col_end), min(self.row_end, other.row_end)
        if col_end <= col or row_end <= row:
            return None
        return Window(col, row, col_end - col, row_end - row)

    def relative_to(self, outer: Window) -> Window:
        """Express this window in the pixel coordinates of ``outer``."""
        return Window(self.col - outer.col, self.row - outer.row, self.width, self.height)


def axis_starts(length: int, size: int, stride: int) -> list[int]:
    """Offsets of windows of ``size`` every ``stride`` pixels covering ``[0, length)``.

    The last window is moved back so it ends exactly at ``length`` (no partial window) unless
    the axis is shorter than one window, in which case a single window starts at 0.

    Args:
        length: number of pixels along the axis.
        size: window size in pixels.
        stride: step between window starts (``stride <= size`` leaves no gaps).

    Returns:
        Sorted, unique start offsets.
    """
    if length <= 0 or size <= 0 or stride <= 0:
        raise ValueError("length, size and stride must be positive")
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def sliding_windows(width: int, height: int, size: int, stride: int) -> list[Window]:
    """Windows of ``size`` pixels (clipped to the raster) every ``stride`` pixels, row by row.

    Every pixel of the ``width`` x ``height`` raster lies in at least one window when
    ``stride <= size``.
    """
    return [
        Window(col, row, min(size, width - col), min(size, height - row))
        for row in axis_starts(height, size, stride)
        for col in axis_starts(width, size, stride)
    ]


def block_windows(width: int, height: int, size: int) -> list[Window]:
    """Windows of ``size`` pixels that partition the raster (edge windows clipped), row by row.

    Unlike :func:`sliding_windows`, whose last window is moved back and overlaps its
    neighbour, no pixel lies in two windows: use these for anything that counts pixels
    (histograms, confusion matrices).

    Raises:
        ValueError: when ``width``, ``height`` or ``size`` is not positive.
    """
    if width <= 0 or height <= 0 or size <= 0:
        raise ValueError("width, height and size must be positive")
    return [
        Window(col, row, min(size, width - col), min(size, height - row))
        for row in range(0, height, size)
        for col in range(0, width, size)
    ]
