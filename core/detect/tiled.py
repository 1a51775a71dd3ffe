"""Tiled prediction over a whole pair in bounded memory.

Windows overlap and are blended with a smooth (squared sine) weight so seams vanish. Windows are
processed one row of windows at a time: rows of the output that no later window touches are
written out and dropped, so memory grows with the raster's width, never with its area.

Windows are spread evenly: along each axis the fewest windows of at most ``window`` pixels that
overlap by at least ``overlap`` are placed at equal steps, and shrunk to the smallest size (a
multiple of ``align``) that still covers the axis. Every pixel is then computed about
``((size + 2 margin) / (size - overlap))^2`` times, instead of up to twice that when the last
window is pushed back onto its neighbour. The work of a run can be restricted to a band of output
rows (:class:`RowBand`), which is how :mod:`core.detect.parallel` splits a raster across processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from core.callbacks import Callbacks
from core.io.geotiff import GeoTiffWriter
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch
from core.io.windows import Window

NODATA = -1.0
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TilingParams:
    """How the pair is cut for prediction.

    Attributes:
        window: window edge in pixels.
        overlap: pixels shared by neighbouring windows.
        margin: context pixels read around each window and cropped from its prediction
            (reflected beyond the raster's edges).
        batch_size: windows read and predicted together.
        align: the network's input (window plus margins) is grown at the bottom and right to a
            multiple of this (1: no growth); the ONNX engine needs 64 for MSI, 16 single-scale.
    """

    window: int = 256
    overlap: int = 64
    batch_size: int = 4
    margin: int = 32
    align: int = 1

    @property
    def stride(self) -> int:
        """Largest step between window starts."""
        return max(1, self.window - self.overlap)


@dataclass(frozen=True)
class RowBand:
    """Output rows ``[start, stop)`` that one run computes and writes (the rest is left out)."""

    start: int
    stop: int

    def touches(self, window: Window) -> bool:
        """True when ``window`` covers one of the band's rows."""
        return window.row < self.stop and window.row_end > self.start


def blend_weight(rows: int, cols: int) -> np.ndarray:
    """Separable squared-sine weight, highest in the centre, never zero."""

    def ramp(n: int) -> np.ndarray:
        return np.maximum(np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2, 1e-3)

    return np.outer(ramp(rows), ramp(cols)).astype(np.float32)


class _Strip:
    """Accumulator for the rows of the output that windows still write into."""

    def __init__(self, rows: int, width: int, top: int = 0) -> None:
        self.top = top
        self.total = np.zeros((rows, width), dtype=np.float32)
        self.weight = np.zeros((rows, width), dtype=np.float32)
        self.valid = np.zeros((rows, width), dtype=bool)

    def add(self, window: Window, prob: np.ndarray, valid: np.ndarray, weight: np.ndarray) -> None:
        rows = slice(window.row - self.top, window.row_end - self.top)
        cols = slice(window.col, window.col_end)
        self.total[rows, cols] += prob * weight
        self.weight[rows, cols] += weight
        self.valid[rows, cols] |= valid

    def flush(self, until: int, out: Sink) -> None:
        """Write rows ``[top, until)`` and shift the buffer up."""
        count = until - self.top
        if count <= 0:
            return
        done = np.where(
            self.valid[:count], self.total[:count] / np.maximum(self.weight[:count], 1e-12), NODATA
        )
        out.write(Window(0, self.top, self.total.shape[1], count), done)
        for buffer in (self.total, self.weight, self.valid):
            buffer[:-count] = buffer[count:].copy()
            buffer[-count:] = 0
        self.top = until


def axis_plan(
    length: int, window: int, overlap: int, align: int = 1, context: int = 0
) -> tuple[int, list[int]]:
    """Evenly spread windows along one axis: their size and start offsets.

    The fewest windows of at most ``window`` pixels overlapping by at least ``overlap`` cover
    the axis; they are shrunk to the smallest size that still overlaps that much (grown so that
    ``size + context`` is a multiple of ``align``, within ``window``) and placed at equal
    integer steps from 0 to ``length - size``.

    Args:
        length: pixels along the axis.
        window: the largest window size.
        overlap: the least overlap of neighbouring windows (less than ``window``).
        align: ``size + context`` is a multiple of this where ``window`` allows.
        context: pixels the network sees beyond the window (both margins).

    Returns:
        ``(size, starts)``.
    """
    if length <= window:
        return length, [0]
    overlap = min(max(overlap, 0), window - 1)
    count = -(-(length - overlap) // (window - overlap))
    need = -(-(length + (count - 1) * overlap) // count)
    size = min(window, -(-(need + context) // align) * align - context)
    return size, [i * (length - size) // (count - 1) for i in range(count)]


def _window_rows(
    pair: RasterPair, params: TilingParams, band: RowBand | None = None
) -> list[list[Window]]:
    """Windows grouped by row of windows (only the rows of windows touching ``band``)."""
    width, height = pair.grid.width, pair.grid.height
    plan = (params.window, params.overlap, params.align, 2 * params.margin)
    col_size, cols = axis_plan(width, *plan)
    row_size, rows = axis_plan(height, *plan)
    groups = [[Window(c, r, col_size, row_size) for c in cols] for r in rows]
    return [g for g in groups if band is None or band.touches(g[0])]


def _read_with_margin(
    pair: RasterPair, window: Window, margin: int, stretch: PairStretch, align: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stretched dates of ``window`` grown by ``margin`` pixels, and the window's validity.

    Inside the raster the margin holds real neighbouring pixels; beyond its edges it is filled by
    reflection, so pixels on the raster's border see context like every other pixel instead of
    the network's zero padding (which otherwise raises the probability along the border). The
    bottom and right margins grow further until both sizes are multiples of ``align``.
    """
    grid = pair.grid
    width, height = window.width + 2 * margin, window.height + 2 * margin
    width, height = -(-width // align) * align, -(-height // align) * align
    grown = Window(window.col - margin, window.row - margin, width, height)
    inside = grown.intersection(Window(0, 0, grid.width, grid.height))
    data = pair.read(inside)
    a = np.where(data.valid, stretch.before.apply(data.before), 0.0).astype(np.float32)
    b = np.where(data.valid, stretch.after.apply(data.after), 0.0).astype(np.float32)
    pad = (
        (0, 0),
        (inside.row - grown.row, grown.row_end - inside.row_end),
        (inside.col - grown.col, grown.col_end - inside.col_end),
    )
    if any(pad[1]) or any(pad[2]):
        mode = "reflect" if min(inside.width, inside.height) > max(*pad[1], *pad[2]) else "edge"
        a, b = np.pad(a, pad, mode=mode), np.pad(b, pad, mode=mode)
    core = window.relative_to(inside)
    return a, b, data.valid[core.slices]


def _predict_windows(
    pair: RasterPair,
    windows: list[Window],
    stretch: PairStretch,
    predictor: Predictor,
    device: torch.device,
    params: TilingParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Read and predict a batch of equally sized windows; returns probabilities and validity."""
    margin = params.margin
    reads = [_read_with_margin(pair, w, margin, stretch, params.align) for w in windows]
    a = np.stack([r[0] for r in reads])
    b = np.stack([r[1] for r in reads])
    with torch.inference_mode():
        ta = torch.from_numpy(a).to(device).contiguous(memory_format=torch.channels_last)
        tb = torch.from_numpy(b).to(device).contiguous(memory_format=torch.channels_last)
        prob = predictor(ta, tb)[:, 0].float().cpu().numpy()
    rows, cols = windows[0].height, windows[0].width
    return prob[:, margin : margin + rows, margin : margin + cols], np.stack([r[2] for r in reads])


class Sink(Protocol):
    """Where finished output rows go: ``write(window, array)`` (a GeoTIFF, or a block file)."""

    def write(self, window: Window, array: np.ndarray) -> None:
        """Store ``array`` at ``window``."""


class _BandSink:
    """Passes on only the part of each write that lies in a band of rows."""

    def __init__(self, sink: Sink, band: RowBand | None) -> None:
        self.sink, self.band = sink, band

    def write(self, window: Window, array: np.ndarray) -> None:
        if self.band is None:
            self.sink.write(window, array)
            return
        start, stop = max(window.row, self.band.start), min(window.row_end, self.band.stop)
        if stop > start:
            rows = array[start - window.row : stop - window.row]
            self.sink.write(Window(window.col, start, window.width, stop - start), rows)


def predict_rows(
    pair: RasterPair,
    predictor: Predictor,
    stretch: PairStretch,
    sink: Sink,
    params: TilingParams,
    device: torch.device,
    callbacks: Callbacks | None = None,
    band: RowBand | None = None,
) -> None:
    """Predict the output rows of ``band`` (all rows when None) and hand them to ``sink``.

    Every window that covers a row of the band is computed, so a row's blend is the same
    whichever band it is computed in.

    Args:
        pair: the open pair.
        predictor: maps before/after batches in [0, 1] to probabilities ``[N, 1, H, W]``.
        stretch: the pair's normalisation.
        sink: receives finished rows, in order, as ``write(Window, float32 array)``.
        params: window, overlap, margin, batch size and alignment.
        device: where the predictor runs.
        callbacks: progress, log and cancel.
        band: the output rows to compute.
    """
    callbacks = callbacks or Callbacks()
    rows = _window_rows(pair, params, band)
    total, done = sum(len(r) for r in rows), 0
    sink = _BandSink(sink, band)
    strip = _Strip(rows[0][0].height, pair.grid.width, rows[0][0].row)
    weights: dict[tuple[int, int], np.ndarray] = {}
    for row in rows:
        strip.flush(row[0].row, sink)
        for start in range(0, len(row), params.batch_size):
            callbacks.check_canceled()
            batch = row[start : start + params.batch_size]
            prob, valid = _predict_windows(pair, batch, stretch, predictor, device, params)
            shape = (batch[0].height, batch[0].width)
            weight = weights.setdefault(shape, blend_weight(*shape))
            for window, p, v in zip(batch, prob, valid):
                strip.add(window, p, v, weight)
            done += len(batch)
            callbacks.progress(done / total, f"window {done}/{total}")
    strip.flush(rows[-1][0].row_end, sink)


def predict_pair(
    pair: RasterPair,
    predictor: Predictor,
    stretch: PairStretch,
    out: Path,
    params: TilingParams,
    device: torch.device,
    metadata: dict[str, str],
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> Path:
    """Predict the change probability of a whole pair into a GeoTIFF on A's grid.

    Args:
        pair: the open pair.
        predictor: maps before/after batches in [0, 1] to probabilities ``[N, 1, H, W]``.
        stretch: the pair's normalisation.
        out: output GeoTIFF (float32, nodata -1).
        params: window, overlap and batch size.
        device: where the predictor runs.
        metadata: items stored in the GeoTIFF (method, threshold...).
        callbacks: progress, log and cancel.
        overwrite: replace an existing output.
    """
    with GeoTiffWriter(out, pair.grid, np.float32, nodata=NODATA, overwrite=overwrite) as writer:
        writer.set_description(1, "change probability")
        writer.set_metadata(metadata)
        predict_rows(pair, predictor, stretch, writer, params, device, callbacks)
    return Path(out)
