"""The change magnitude of a pair: the per-pixel colour difference, and its Otsu threshold.

The Euclidean norm of the difference of the stretched dates is change vector analysis' cue
(:mod:`core.detect.cva`); its Otsu threshold over the whole pair is a label-free statistic that
tile sets keep for every tile (``TileSet.cva_threshold``) and that the map combined with CVA is
scaled by (:mod:`core.detect.fusion`).

For a pair of **one band**, the combined map of new models uses the difference of the two dates
each *standardised* by its own mean and standard deviation over the pair (:class:`Standardisation`)
instead: on the transfer suite's three one-band families (Sentinel-1 floods, classic SAR pairs,
single-band Landsat / ALI) it raised the product's F1 on the training tiles by 0.041, 0.021 and
0.189 (means of three seeds) and by 0.040, 0.065 and 0.150 on a fresh fourth seed, judged by
issue 18's rule; on pairs of several bands standardising lowered F1 (OMBRIA Sentinel-2 -0.040),
so they keep the plain difference (BENCHMARKS.md, session 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from core.callbacks import Callbacks
from core.data.otsu import otsu
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch
from core.io.windows import block_windows

BLOCK = 1024
BINS = 2048
Array = TypeVar("Array")  # a numpy array or a torch tensor


@dataclass(frozen=True)
class Standardisation:
    """Each date's mean and standard deviation over the valid pixels of a one-band pair.

    Values are those of the stretched band (in [0, 1]); a date is standardised as
    ``(value - mean) / std``.
    """

    before_mean: float
    before_std: float
    after_mean: float
    after_std: float

    @property
    def values(self) -> tuple[float, float, float, float]:
        """The four numbers in field order (tile sets and detection parameters keep them so)."""
        return (self.before_mean, self.before_std, self.after_mean, self.after_std)

    def apply(self, before: Array, after: Array) -> tuple[Array, Array]:
        """Both dates standardised (numpy arrays or torch tensors of stretched values)."""
        return (
            (before - self.before_mean) / self.before_std,
            (after - self.after_mean) / self.after_std,
        )

    @property
    def top(self) -> float:
        """The largest standardised difference two stretched values in [0, 1] can make."""
        return 1.0 / self.before_std + 1.0 / self.after_std


@dataclass(frozen=True)
class PairCue:
    """A pair's label-free statistics for the map combined with CVA.

    Attributes:
        threshold: Otsu's threshold of the plain magnitude (:func:`pair_threshold`).
        standard: the standardisation of a one-band pair; None for several bands.
        standard_threshold: Otsu's threshold of the standardised magnitude (0 without one).
    """

    threshold: float
    standard: Standardisation | None = None
    standard_threshold: float = 0.0


def standardises(band_count: int) -> bool:
    """True when the combined map uses standardised dates for pairs of ``band_count`` bands."""
    return band_count == 1


def magnitude(
    pair_window_before: np.ndarray,
    pair_window_after: np.ndarray,
    stretch: PairStretch,
    standard: Standardisation | None = None,
) -> np.ndarray:
    """Per-pixel change magnitude of a stretched window pair (``[rows, cols]`` float32).

    With ``standard``, each date is standardised first (one-band pairs).
    """
    a = stretch.before.apply(pair_window_before)
    b = stretch.after.apply(pair_window_after)
    if standard is not None:
        a, b = standard.apply(a, b)
    return np.sqrt(np.sum((b - a) ** 2, axis=0)).astype(np.float32, copy=False)


def tile_magnitude(
    before: np.ndarray, after: np.ndarray, standard: np.ndarray | None = None
) -> np.ndarray:
    """CVA magnitude of uint8-quantised stretched tiles ``[N, bands, T, T]`` -> ``[N, T, T]``.

    The per-tile twin of :func:`magnitude`, for tile sets (training's method choice, the
    benchmark). ``standard``: float ``[N, 4]``, each tile's pair :attr:`Standardisation.values`.
    """
    a = before.astype(np.float32) / 255.0
    b = after.astype(np.float32) / 255.0
    if standard is not None:
        mean_a, std_a, mean_b, std_b = (standard[:, i, None, None, None] for i in range(4))
        a, b = (a - mean_a) / std_a, (b - mean_b) / std_b
    return np.sqrt(((b - a) ** 2).sum(axis=-3))


def pair_threshold(
    pair: RasterPair,
    stretch: PairStretch,
    callbacks: Callbacks | None = None,
    share: float = 1.0,
    standard: Standardisation | None = None,
) -> float:
    """Otsu's threshold of the change magnitude over every valid pixel of the pair.

    One windowed pass (memory bounded by ``BLOCK``); no label is involved. Progress runs from 0
    to ``share``. With ``standard``, of the standardised magnitude.
    """
    callbacks = callbacks or Callbacks()
    top = float(np.sqrt(pair.band_count)) if standard is None else standard.top
    windows = block_windows(pair.grid.width, pair.grid.height, BLOCK)
    hist = np.zeros(BINS, dtype=np.int64)
    for i, window in enumerate(windows):
        callbacks.check_canceled()
        data = pair.read(window)
        mag = magnitude(data.before, data.after, stretch, standard)
        hist += np.histogram(mag[data.valid], bins=BINS, range=(0.0, top))[0]
        callbacks.progress(share * (i + 1) / len(windows), "change magnitude histogram")
    return max(otsu(hist, np.linspace(0.0, top, BINS + 1)), 1e-6)


def pair_standardisation(
    pair: RasterPair, stretch: PairStretch, callbacks: Callbacks | None = None
) -> Standardisation:
    """Each date's mean and standard deviation over every valid pixel of a one-band pair.

    One windowed pass over the stretched band; no label is involved.

    Raises:
        ValueError: for a pair of several bands.
    """
    if not standardises(pair.band_count):
        raise ValueError("only one-band pairs are standardised")
    callbacks = callbacks or Callbacks()
    sums = np.zeros((2, 3), dtype=np.float64)  # per date: count, sum, sum of squares
    for window in block_windows(pair.grid.width, pair.grid.height, BLOCK):
        callbacks.check_canceled()
        data = pair.read(window)
        for row, (date, values) in enumerate(
            ((stretch.before, data.before), (stretch.after, data.after))
        ):
            inside = date.apply(values)[0][data.valid].astype(np.float64)
            sums[row] += (inside.size, inside.sum(), np.square(inside).sum())
    count = np.maximum(sums[:, 0], 1.0)
    mean = sums[:, 1] / count
    std = np.sqrt(np.maximum(sums[:, 2] / count - mean**2, 0.0))
    std = np.maximum(std, 1e-3)  # a constant date: its differences count in thousandths
    return Standardisation(float(mean[0]), float(std[0]), float(mean[1]), float(std[1]))


def pair_cue(pair: RasterPair, stretch: PairStretch, callbacks: Callbacks | None = None) -> PairCue:
    """The pair's plain threshold and, for one band, its standardisation and that threshold."""
    callbacks = callbacks or Callbacks()
    if not standardises(pair.band_count):
        return PairCue(pair_threshold(pair, stretch, callbacks))
    plain = pair_threshold(pair, stretch, callbacks.within(0.0, 1 / 3))
    standard = pair_standardisation(pair, stretch, callbacks)
    threshold = pair_threshold(pair, stretch, callbacks.within(2 / 3, 1.0), standard=standard)
    return PairCue(plain, standard, threshold)
