"""One pass over the probability raster: threshold, label the change components, measure them.

The raster is read once, chunk by chunk (full rows, a few million pixels). In each chunk the
change pixels (``value >= threshold``; nodata, masked and NaN pixels never are; the tag rules
clear the tiles tagged unchanged) are labelled by :mod:`core.vector.components`, their sum,
count and maximum probability gathered per label, and the labels written to a temporary Int32
GeoTIFF. Only the columns that hold change are worked on: a chunk without change costs its read
and one comparison, and the label raster is sparse (blocks never written read as zero and take
no room), so the pass costs little more than reading the raster when change is rare.

A component that continues from the chunk above is written with the label it has there;
components that meet only further down (the bottom of a U) are merged at the end (every label
becomes the smallest label of its component) and only the windows that hold such a label are
rewritten. GDAL Polygonize of that raster gives the polygons of the change mask, each carrying
its label as ``pid``, the index of its statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.vector.boxes import BOX_LIMIT, component_boxes, run_boxes
from core.vector.components import (
    Runs,
    label_chunk,
    paint,
    pixel_index,
    smallest_connected,
)
from core.vector.polygonize import PolygonStats, Source, row_chunks, scaled, temp_raster
from core.vector.reading import Chunk, blocks_to_read, read_ahead
from core.vector.tag_rules import TagRules

_BLOCK = 256
_LABEL_TIFF = ("TILED=YES", f"BLOCKXSIZE={_BLOCK}", f"BLOCKYSIZE={_BLOCK}", "SPARSE_OK=TRUE")


def _compression() -> tuple[str, ...]:
    """Fast lossless compression for the label raster: ZSTD level 1 where GDAL has it."""
    options = gdal.GetDriverByName("GTiff").GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    return ("COMPRESS=ZSTD", "ZSTD_LEVEL=1") if "ZSTD" in options else ("COMPRESS=LZW",)


@dataclass(frozen=True)
class _Settings:
    """What the pass compares: the threshold, the connectivity, whether to read the mask."""

    threshold: float
    connectivity: int
    use_mask: bool


@dataclass
class _Window:
    """Where one chunk wrote labels ``first..first + count - 1``."""

    row: int
    col: int
    rows: int
    cols: int
    first: int
    count: int


@dataclass
class _Pass:
    """What the pass has gathered so far."""

    next_label: int = 1
    above: Runs | None = None  # labelled runs of the last row of the previous chunk
    windows: list[_Window] = field(default_factory=list)
    pairs: list[np.ndarray] = field(default_factory=list)
    sums: list[np.ndarray] = field(default_factory=lambda: [np.zeros(1)])
    counts: list[np.ndarray] = field(default_factory=lambda: [np.zeros(1, np.int64)])
    maxima: list[np.ndarray] = field(default_factory=lambda: [np.full(1, -np.inf)])
    shown: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    boxes: list[np.ndarray] | None = field(default_factory=lambda: [np.zeros((1, 4), np.int64)])

    def adopt(self, count: int, pairs: np.ndarray) -> np.ndarray:
        """Choose the label written for each new label ``next_label..``, and remember it.

        A new component that continues one from the chunk above is written with that one's
        label (the smallest, where it joins several), so its windows seldom need rewriting.
        """
        first = self.next_label
        shown = np.arange(first, first + count)
        if pairs.size:
            np.minimum.at(shown, pairs[1] - first, self.shown[pairs[0]])
        if self.shown.size < first + count:
            grown = np.zeros(max(first + count, 2 * self.shown.size), np.int64)
            grown[: self.shown.size] = self.shown
            self.shown = grown
        self.shown[first : first + count] = shown
        return shown

    def measure(self, runs: Runs, labels: np.ndarray, count: int, values: np.ndarray) -> None:
        """Add the sums, counts and maxima of the ``count`` labels of ``runs``.

        ``labels`` and ``values`` are those of the runs' pixels, run after run.
        """
        first = self.next_label
        self.sums.append(np.bincount(labels - first, weights=values, minlength=count))
        lengths = runs.lengths
        self.counts.append(np.bincount(runs.labels - first, lengths, count).astype(np.int64))
        maxima = np.full(count, -np.inf)
        top = np.maximum.reduceat(values, np.cumsum(lengths) - lengths)  # each run's largest
        np.maximum.at(maxima, runs.labels - first, top)
        self.maxima.append(maxima)

    def merged(self, roots: np.ndarray) -> PolygonStats:
        """The statistics of whole components, indexed by their smallest label (``roots``)."""
        size = roots.size
        maxima = np.full(size, -np.inf)
        np.maximum.at(maxima, roots, np.concatenate(self.maxima))
        return PolygonStats(
            np.bincount(roots, weights=np.concatenate(self.sums), minlength=size),
            np.bincount(roots, weights=np.concatenate(self.counts), minlength=size).astype(
                np.int64
            ),
            maxima,
        )


def _column_windows(above: np.ndarray) -> list[tuple[int, int]]:
    """``(first, end)`` columns of the runs of label blocks whose columns hold change.

    Blocks without change separate the windows, so no component of the chunk spans two.
    """
    blocks = -(-above.shape[1] // _BLOCK)
    columns = np.zeros(blocks * _BLOCK, bool)
    columns[: above.shape[1]] = above.any(axis=0)
    busy = columns.reshape(blocks, _BLOCK).any(axis=1).astype(np.int8)
    edges = np.flatnonzero(np.diff(busy, prepend=0, append=0))
    return [
        (int(first) * _BLOCK, min(above.shape[1], int(end) * _BLOCK))
        for first, end in zip(edges[0::2], edges[1::2])
    ]


def _label_window(
    state: _Pass,
    band: gdal.Band,
    corner: tuple[int, int],
    values: np.ndarray,
    change: np.ndarray,
    connectivity: int,
    divisor: float,
) -> Runs:
    """Label, measure and write the change of one window whose top left pixel is ``corner``.

    Returns the labelled runs of its last row, in raster columns.
    """
    row, col = corner
    above = state.above.shifted(-col) if state.above is not None else None
    found = label_chunk(change, state.next_label, connectivity, above)
    runs, count = found.runs, found.count
    if state.next_label + count > np.iinfo(np.int32).max:  # the label raster is Int32
        raise KdmsiError("The change map has over 2 billion separate change areas; raise the "
                         "threshold or vectorize it in parts.")  # fmt: skip
    shown = state.adopt(count, found.pairs)
    if state.boxes is not None and state.next_label + count > BOX_LIMIT:
        state.boxes = None  # too many components to polygonize one by one: not worth tracking
    if state.boxes is not None and count:
        state.boxes.append(run_boxes(runs, count, state.next_label, corner))
    index = pixel_index(runs, change.shape[1])
    labels = np.repeat(runs.labels, runs.lengths)
    # the change pixels' values in row-major order, the runs' order (no copy of the window)
    state.measure(runs, labels, count, scaled(values[change], divisor))
    band.WriteArray(paint(index, shown[labels - state.next_label], change.shape), col, row)
    window = _Window(row, col, change.shape[0], change.shape[1], state.next_label, count)
    state.windows.append(window)
    state.pairs.append(found.pairs)
    state.next_label += count
    return runs.last_row(change.shape[0] - 1).shifted(col)


def _label_rows(
    source: Source,
    settings: _Settings,
    rules: TagRules | None,
    state: _Pass,
    band: gdal.Band,
    chunk: Chunk,
) -> None:
    """Label, measure and write the change of one chunk of full rows.

    Only the windows of columns that hold a pixel above the threshold are worked on.
    """
    row, values = chunk.row, chunk.values
    above = source.above(values, settings.threshold)
    last_rows = []
    for col, end in _column_windows(above):
        change = above[:, col:end]
        change &= chunk.valid(col, end)
        if rules is not None:
            rules.apply(change, row, col)
        if change.any():
            last_rows.append(
                _label_window(
                    state, band, (row, col), values[:, col:end], change,
                    settings.connectivity, source.divisor,
                )
            )  # fmt: skip
    state.above = Runs.joined(last_rows) if last_rows else None


def _relabel(band: gdal.Band, state: _Pass, roots: np.ndarray) -> None:
    """Rewrite the windows written with a label that is not its component's smallest.

    That happens where a component joins others below the chunk that first held it (the
    bottom of a U), so few windows are read again.
    """
    lookup = roots.astype(np.int32)
    for w in state.windows:
        shown = state.shown[w.first : w.first + w.count]
        if (roots[shown] != shown).any():
            labels = band.ReadAsArray(w.col, w.row, w.cols, w.rows)
            band.WriteArray(lookup[labels], w.col, w.row)


@dataclass
class LabelRaster:
    """What :func:`label_raster` made.

    Attributes:
        raster: the temporary Int32 GeoTIFF of labels (0 where there is no change).
        stats: the statistics of each component, indexed by its label.
        boxes: each component's bounding box keyed by its label, top to bottom
            (:func:`core.vector.boxes.component_boxes`), or None past ``BOX_LIMIT`` components.
    """

    raster: gdal.Dataset
    stats: PolygonStats
    boxes: dict[int, tuple[int, ...]] | None


def label_raster(
    source: Source,
    params: tuple[float, int],
    path: Path,
    callbacks: Callbacks,
    rules: TagRules | None = None,
) -> LabelRaster:
    """Write the labels of the change components to a temporary GeoTIFF; measure them.

    Args:
        source: the probability raster.
        params: threshold and connectivity (4 or 8).
        path: the temporary GeoTIFF (Int32, 0 where there is no change).
        callbacks: progress (0 to 0.3, "thresholding") and cancel, once per chunk.
        rules: the user's tags: tiles tagged unchanged are cleared, changed ones counted.

    Returns:
        The label raster, the statistics and the boxes of the components.
    """
    raster = temp_raster(source, path, gdal.GDT_Int32, _LABEL_TIFF + _compression())
    band = raster.GetRasterBand(1)
    state = _Pass()
    threshold, connectivity = params
    settings = _Settings(threshold, connectivity, source.mask_hides(threshold))
    chunks = row_chunks(source, _BLOCK)
    reach = blocks_to_read(source, threshold)
    for index, chunk in enumerate(read_ahead(source, chunks, settings.use_mask, reach)):
        callbacks.check_canceled()
        _label_rows(source, settings, rules, state, band, chunk)
        callbacks.progress(0.3 * (index + 1) / len(chunks), "thresholding")
    pairs = np.concatenate([np.empty((2, 0), np.int64), *state.pairs], axis=1)
    roots = smallest_connected(state.next_label, pairs[0], pairs[1])
    _relabel(band, state, roots)
    band.FlushCache()
    boxes = None
    if state.boxes is not None:
        boxes = component_boxes(np.concatenate(state.boxes), roots)
    return LabelRaster(raster, state.merged(roots), boxes)
