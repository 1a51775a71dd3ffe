"""The change magnitude of a pair: the per-pixel colour difference, and its Otsu threshold.

The Euclidean norm of the difference of the stretched dates is change vector analysis' cue
(:mod:`core.detect.cva`); its Otsu threshold over the whole pair is a label-free statistic that
tile sets keep for every tile (``TileSet.cva_threshold``) and that the map combined with CVA is
scaled by (:mod:`core.detect.fusion`).
"""

from __future__ import annotations

import numpy as np

from core.callbacks import Callbacks
from core.data.otsu import otsu
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch
from core.io.windows import block_windows

BLOCK = 1024
BINS = 2048


def magnitude(
    pair_window_before: np.ndarray, pair_window_after: np.ndarray, stretch: PairStretch
) -> np.ndarray:
    """Per-pixel change magnitude of a stretched window pair (``[rows, cols]`` float32)."""
    a = stretch.before.apply(pair_window_before)
    b = stretch.after.apply(pair_window_after)
    return np.sqrt(np.sum((b - a) ** 2, axis=0))


def tile_magnitude(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """CVA magnitude of uint8-quantised stretched tiles ``[..., bands, T, T]`` -> ``[..., T, T]``.

    The per-tile twin of :func:`magnitude`, for tile sets (training's method choice, the benchmark).
    """
    diff = after.astype(np.float32) / 255.0 - before.astype(np.float32) / 255.0
    return np.sqrt((diff**2).sum(axis=-3))


def pair_threshold(
    pair: RasterPair, stretch: PairStretch, callbacks: Callbacks | None = None, share: float = 1.0
) -> float:
    """Otsu's threshold of the change magnitude over every valid pixel of the pair.

    One windowed pass (memory bounded by ``BLOCK``); no label is involved. Progress runs from 0
    to ``share``.
    """
    callbacks = callbacks or Callbacks()
    top = float(np.sqrt(pair.band_count))
    windows = block_windows(pair.grid.width, pair.grid.height, BLOCK)
    hist = np.zeros(BINS, dtype=np.int64)
    for i, window in enumerate(windows):
        callbacks.check_canceled()
        data = pair.read(window)
        mag = magnitude(data.before, data.after, stretch)
        hist += np.histogram(mag[data.valid], bins=BINS, range=(0.0, top))[0]
        callbacks.progress(share * (i + 1) / len(windows), "change magnitude histogram")
    return max(otsu(hist, np.linspace(0.0, top, BINS + 1)), 1e-6)
