"""Connected components of a change mask from its runs of change pixels, in numpy alone.

A *run* is a horizontal stretch of change pixels in one row. Two runs in neighbouring rows belong
to the same component when their columns overlap (4-connectivity) or overlap or touch at a
corner (8-connectivity); runs never join within a row, since a gap separates them. Components
are found by hooking roots to the smallest neighbouring root and flattening the trees until no
edge joins two roots (:func:`smallest_connected`), so every component is named after its smallest
member. This is what GDAL Polygonize does with the same connectivity, so the component of a pixel
is the polygon it falls in.

:func:`label_chunk` labels a chunk of full rows and reports the pairs of labels that meet across
the boundary with the chunk above; :func:`smallest_connected` applied to those pairs merges the
labels of the whole raster at the end, with memory that grows with the number of components,
not with the raster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Runs:
    """Runs of change pixels, in row-major order.

    Attributes:
        rows: row of each run (relative to its chunk; -1 for the last row of the chunk above).
        starts: first column of each run.
        ends: one past the last column of each run.
        labels: component label of each run (0 until labelled).
    """

    rows: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Pixels in each run."""
        return self.ends - self.starts

    def last_row(self, row: int) -> Runs:
        """The runs of row ``row``, moved to row -1 (the row above the next chunk)."""
        keep = self.rows == row
        return Runs(
            np.full(int(keep.sum()), -1, np.int64),
            self.starts[keep],
            self.ends[keep],
            self.labels[keep],
        )

    def shifted(self, columns: int) -> Runs:
        """The same runs moved ``columns`` columns to the right."""
        return Runs(self.rows, self.starts + columns, self.ends + columns, self.labels)

    @classmethod
    def joined(cls, parts: list[Runs]) -> Runs:
        """The runs of ``parts`` one after the other (keep them in row-major order)."""
        fields = ("rows", "starts", "ends", "labels")
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in fields))


def runs_of(change: np.ndarray) -> Runs:
    """Find the runs of a 2-D boolean mask (row-major order, labels 0).

    With a column of ``False`` on each side, every row's changes alternate start, end, start,
    end, so the places where a pixel differs from its left neighbour, taken in row-major order,
    pair up (compared as booleans: several times faster than differences of integers).
    """
    rows, width = change.shape
    padded = np.zeros((rows, width + 2), bool)
    padded[:, 1:-1] = change
    steps = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    run_rows, starts = np.divmod(steps[0::2], width + 1)
    return Runs(run_rows, starts, steps[1::2] % (width + 1), np.zeros(run_rows.size, np.int64))


def touching(upper: Runs, lower: Runs, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Return index pairs ``(i, j)`` where run ``upper[i]``, a row above ``lower[j]``, joins it.

    Both run lists must be in row-major order; they may be the same list (pairs within a chunk).
    Within a row the runs are disjoint and sorted, so the runs above that join a run form a
    contiguous range, found by binary search on ``row * stride + column`` keys.
    """
    stride = int(max(upper.ends.max(initial=0), lower.ends.max(initial=0))) + 2
    above = (lower.rows - 1) * stride
    corner = connectivity == 8  # runs touching at a corner join too
    side = ("left", "right") if corner else ("right", "left")
    first = np.searchsorted(upper.rows * stride + upper.ends, above + lower.starts, side[0])
    stop = np.searchsorted(upper.rows * stride + upper.starts, above + lower.ends, side[1])
    counts = np.maximum(stop - first, 0)
    total = int(counts.sum())
    lower_index = np.repeat(np.arange(lower.rows.size), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(first, counts) + offsets, lower_index


def smallest_connected(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the smallest node of each node's component; edges join ``a[k]`` and ``b[k]``.

    Every round hooks each root to the smallest root it has an edge to, then flattens the
    trees; edges inside one tree are dropped, so the rounds get cheaper and stop when none is left.
    """
    parent = np.arange(count)
    while a.size:
        root_a, root_b = parent[a], parent[b]
        apart = root_a != root_b
        a, b, root_a, root_b = a[apart], b[apart], root_a[apart], root_b[apart]
        low, high = np.minimum(root_a, root_b), np.maximum(root_a, root_b)
        np.minimum.at(parent, high, low)
        while True:  # flatten: every node points at its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    return parent


@dataclass
class ChunkLabels:
    """The components of one chunk.

    Attributes:
        runs: the chunk's runs with their labels (``first_label`` and up, in scan order).
        count: number of new labels.
        pairs: ``(label above, label here)`` for components joined across the top boundary.
    """

    runs: Runs
    count: int
    pairs: np.ndarray


def label_chunk(
    change: np.ndarray, first_label: int, connectivity: int, above: Runs | None = None
) -> ChunkLabels:
    """Label the components of a chunk of rows, numbering them from ``first_label``.

    Args:
        change: the chunk's change mask (rows x columns, boolean).
        first_label: the label of the chunk's first component.
        connectivity: 4 or 8.
        above: the labelled runs of the row just above the chunk (row -1, same columns), if any.
    """
    runs = runs_of(change)
    upper, lower = touching(runs, runs, connectivity)
    roots = smallest_connected(runs.rows.size, upper, lower)
    is_root = roots == np.arange(roots.size)
    number = np.cumsum(is_root) - 1 + first_label  # roots in scan order: first_label, +1, ...
    runs.labels = number[roots]
    pairs = np.empty((2, 0), np.int64)
    if above is not None and above.rows.size:
        i, j = touching(above, runs, connectivity)
        pairs = np.stack([above.labels[i], runs.labels[j]])
    return ChunkLabels(runs, int(is_root.sum()), pairs)


def pixel_index(runs: Runs, width: int) -> np.ndarray:
    """Flat (row-major) index of every pixel of the runs, run after run: the mask's pixel order."""
    lengths = runs.lengths
    shift = runs.rows * width + runs.starts - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(int(lengths.sum()))


def paint(index: np.ndarray, labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return an int32 array of ``shape`` holding ``labels`` at flat ``index`` (0 elsewhere).

    ``index`` is :func:`pixel_index` of some runs and ``labels`` their pixels' labels
    (``np.repeat(runs.labels, runs.lengths)``).
    """
    image = np.zeros(shape, np.int32)
    image.reshape(-1)[index] = labels
    return image


def strong_regions(
    values: np.ndarray, threshold: float, peak: float, connectivity: int = 4
) -> np.ndarray:
    """The change pixels of an in-memory map that ``vectorize`` gives polygons, before sizes.

    Args:
        values: a 2-D probability map (NaN is never change).
        threshold: change is ``values >= threshold``.
        peak: a region (connected change pixels) is kept only where its largest value reaches it.
        connectivity: 4 or 8, as the polygons'.

    Returns:
        A boolean mask of the kept regions' pixels.
    """
    chunk = label_chunk(values >= threshold, 1, connectivity)
    runs = chunk.runs
    kept = np.zeros(values.size, bool)
    if runs.rows.size:
        index = pixel_index(runs, values.shape[1])
        lengths = runs.lengths
        tops = np.maximum.reduceat(values.reshape(-1)[index], np.cumsum(lengths) - lengths)
        maxima = np.full(chunk.count + 1, -np.inf)
        np.maximum.at(maxima, runs.labels, tops)
        kept[index] = np.repeat(maxima[runs.labels] >= peak, lengths)
    return kept.reshape(values.shape)
