"""Per-band percentile stretch that maps 8-bit RGB and 16-bit multispectral pixels to [0, 1].

The stretch is computed once from a decimated read of the pair (each date on its own, which also
evens out illumination and sensor gain between dates) and stored in model files for reuse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.windows import Window

SAMPLE_PIXELS = 1_000_000


@dataclass(frozen=True)
class Stretch:
    """Linear map of each band from ``[low, high]`` to ``[0, 1]``, clipped."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Stretch a ``[bands, rows, cols]`` array to float32 in [0, 1]."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        span = np.maximum(np.asarray(self.high, dtype=np.float32)[:, None, None] - low, 1e-6)
        return np.clip((data - low) / span, 0.0, 1.0).astype(np.float32, copy=False)


@dataclass(frozen=True)
class PairStretch:
    """The stretches of the before and after dates of one pair."""

    before: Stretch
    after: Stretch

    def to_dict(self) -> dict:
        """JSON-ready form, for model files and run folders."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PairStretch:
        """Inverse of :meth:`to_dict`."""
        return cls(
            Stretch(tuple(data["before"]["low"]), tuple(data["before"]["high"])),
            Stretch(tuple(data["after"]["low"]), tuple(data["after"]["high"])),
        )


def band_percentiles(
    data: np.ndarray, valid: np.ndarray, low_pct: float, high_pct: float
) -> Stretch:
    """Per-band percentiles of the valid pixels of a ``[bands, rows, cols]`` array.

    The same values as ``np.percentile`` (linear interpolation); bands of whole numbers in
    ``[0, 65535]`` (8- and 16-bit imagery) are counted instead of sorted, several times faster.
    """
    pixels = data.reshape(data.shape[0], -1) if valid.all() else data[:, valid]
    if pixels.shape[1] == 0:
        raise ValueError("no valid pixels")
    low, high = [], []
    for band in pixels:
        counts = _whole_number_counts(band)
        for pct, out in ((low_pct, low), (high_pct, high)):
            out.append(_counted_percentile(counts, pct) if counts is not None
                       else np.percentile(band, pct))  # fmt: skip
    low_a, high_a = np.asarray(low, np.float64), np.asarray(high, np.float64)
    high_a = np.where(high_a > low_a, high_a, low_a + 1.0)
    return Stretch(tuple(float(v) for v in low_a), tuple(float(v) for v in high_a))


def _whole_number_counts(band: np.ndarray) -> np.ndarray | None:
    """How often each value 0..65535 occurs in ``band``; None unless all are such whole numbers."""
    if band.dtype.kind == "f" and not np.isfinite(band).all():
        return None
    whole = band.astype(np.int64)
    if whole.min() < 0 or whole.max() > 65535 or not np.array_equal(whole, band):
        return None
    return np.bincount(whole, minlength=1)


def _counted_percentile(counts: np.ndarray, pct: float) -> np.floating:
    """``np.percentile`` of the values ``counts`` describes (value ``i`` occurring ``counts[i]``).

    Linear interpolation between the two order statistics around ``(n - 1) * pct / 100``, with
    numpy's own rounding (its ``_lerp``, in float64).
    """
    ends = np.cumsum(counts)  # order statistics 0 .. ends[i] - 1 hold values <= i
    position = (ends[-1] - 1) * (pct / 100.0)
    below = int(np.floor(position))
    above = min(below + 1, int(ends[-1]) - 1)
    a, b = (np.float64(np.searchsorted(ends, k, side="right")) for k in (below, above))
    t = np.float64(position - below)
    step = b - a
    return b - step * (1.0 - t) if t >= 0.5 else a + step * t


def compute_stretch(pair: RasterPair, low_pct: float = 2.0, high_pct: float = 98.0) -> PairStretch:
    """Compute the percentile stretch of each date from a decimated read of the whole pair.

    Args:
        pair: the open pair.
        low_pct: percentile mapped to 0.
        high_pct: percentile mapped to 1.

    Raises:
        KdmsiError: when the pair has no pixel that is valid on both dates.
    """
    width, height = pair.grid.width, pair.grid.height
    scale = min(1.0, (SAMPLE_PIXELS / (width * height)) ** 0.5)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    sample = pair.read(Window(0, 0, width, height), out_size=size)
    if not sample.valid.any():
        raise KdmsiError(
            f"{pair.before_path} and {pair.after_path} have no pixel with data on both dates; "
            "check their nodata values and overlap."
        )
    return PairStretch(
        band_percentiles(sample.before, sample.valid, low_pct, high_pct),
        band_percentiles(sample.after, sample.valid, low_pct, high_pct),
    )
