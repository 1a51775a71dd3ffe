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
    """Per-band percentiles of the valid pixels of a ``[bands, rows, cols]`` array."""
    pixels = data[:, valid]
    if pixels.shape[1] == 0:
        raise ValueError("no valid pixels")
    low = np.percentile(pixels, low_pct, axis=1)
    high = np.percentile(pixels, high_pct, axis=1)
    high = np.where(high > low, high, low + 1.0)
    return Stretch(tuple(float(v) for v in low), tuple(float(v) for v in high))


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
