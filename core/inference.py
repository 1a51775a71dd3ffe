"""Tiled prediction over a whole pair in bounded memory.

Windows overlap and are blended with a smooth (squared sine) weight so seams vanish. Windows are
processed one row of windows at a time: rows of the output that no later window touches are
written out and dropped, so memory grows with the raster's width, never with its area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.callbacks import Callbacks
from core.geotiff import GeoTiffWriter
from core.normalize import PairStretch
from core.rasters import RasterPair
from core.windows import Window, axis_starts

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
        batch_size: windows per forward pass.
    """

    window: int = 256
    overlap: int = 64
    batch_size: int = 4
    margin: int = 32

    @property
    def stride(self) -> int:
        """Step between window starts."""
        return max(1, self.window - self.overlap)


def blend_weight(rows: int, cols: int) -> np.ndarray:
    """Separable squared-sine weight, highest in the centre, never zero."""

    def ramp(n: int) -> np.ndarray:
        return np.maximum(np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2, 1e-3)

    return np.outer(ramp(rows), ramp(cols)).astype(np.float32)


class _Strip:
    """Accumulator for the rows of the output that windows still write into."""

    def __init__(self, rows: int, width: int) -> None:
        self.top = 0
        self.total = np.zeros((rows, width), dtype=np.float32)
        self.weight = np.zeros((rows, width), dtype=np.float32)
        self.valid = np.zeros((rows, width), dtype=bool)

    def add(self, window: Window, prob: np.ndarray, valid: np.ndarray, weight: np.ndarray) -> None:
        rows = slice(window.row - self.top, window.row_end - self.top)
        cols = slice(window.col, window.col_end)
        self.total[rows, cols] += prob * weight
        self.weight[rows, cols] += weight
        self.valid[rows, cols] |= valid

    def flush(self, until: int, out: GeoTiffWriter) -> None:
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


def _window_rows(pair: RasterPair, params: TilingParams) -> list[list[Window]]:
    """Windows grouped by row of windows."""
    width, height = pair.grid.width, pair.grid.height
    cols = axis_starts(width, params.window, params.stride)
    return [
        [Window(c, r, min(params.window, width - c), min(params.window, height - r)) for c in cols]
        for r in axis_starts(height, params.window, params.stride)
    ]


def _read_with_margin(pair: RasterPair, window: Window, margin: int, stretch: PairStretch) -> tuple:
    """Stretched dates of ``window`` grown by ``margin`` pixels, and the window's validity.

    Inside the raster the margin holds real neighbouring pixels; beyond its edges it is filled by
    reflection, so pixels on the raster's border see context like every other pixel instead of
    the network's zero padding (which otherwise raises the probability along the border).
    """
    grid = pair.grid
    grown = Window(
        window.col - margin,
        window.row - margin,
        window.width + 2 * margin,
        window.height + 2 * margin,
    )
    inside = grown.intersection(Window(0, 0, grid.width, grid.height))
    data = pair.read(inside)
    a = np.where(data.valid, stretch.before.apply(data.before), 0.0)
    b = np.where(data.valid, stretch.after.apply(data.after), 0.0)
    pad = (
        (0, 0),
        (inside.row - grown.row, grown.row_end - inside.row_end),
        (inside.col - grown.col, grown.col_end - inside.col_end),
    )
    mode = "reflect" if min(inside.width, inside.height) > margin else "edge"
    a, b = np.pad(a, pad, mode=mode), np.pad(b, pad, mode=mode)
    core = window.relative_to(inside)
    return a, b, data.valid[core.slices]


def _predict_windows(
    pair: RasterPair,
    windows: list[Window],
    stretch: PairStretch,
    predictor: Predictor,
    device: torch.device,
    margin: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Read and predict a batch of equally sized windows; returns probabilities and validity."""
    reads = [_read_with_margin(pair, w, margin, stretch) for w in windows]
    a = np.stack([r[0] for r in reads])
    b = np.stack([r[1] for r in reads])
    with torch.inference_mode():
        ta = torch.from_numpy(a).to(device).contiguous(memory_format=torch.channels_last)
        tb = torch.from_numpy(b).to(device).contiguous(memory_format=torch.channels_last)
        prob = predictor(ta, tb)[:, 0].float().cpu().numpy()
    rows, cols = windows[0].height, windows[0].width
    return prob[:, margin : margin + rows, margin : margin + cols], np.stack([r[2] for r in reads])


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
    callbacks = callbacks or Callbacks()
    rows = _window_rows(pair, params)
    total = sum(len(r) for r in rows)
    done = 0
    strip = _Strip(min(params.window, pair.grid.height), pair.grid.width)
    with GeoTiffWriter(out, pair.grid, np.float32, nodata=NODATA, overwrite=overwrite) as writer:
        writer.set_description(1, "change probability")
        writer.set_metadata(metadata)
        for row in rows:
            strip.flush(row[0].row, writer)
            for start in range(0, len(row), params.batch_size):
                callbacks.check_canceled()
                batch = row[start : start + params.batch_size]
                prob, valid = _predict_windows(
                    pair, batch, stretch, predictor, device, params.margin
                )
                weight = blend_weight(batch[0].height, batch[0].width)
                for window, p, v in zip(batch, prob, valid):
                    strip.add(window, p, v, weight)
                done += len(batch)
                callbacks.progress(done / total, f"window {done}/{total}")
        strip.flush(pair.grid.height, writer)
    return Path(out)
