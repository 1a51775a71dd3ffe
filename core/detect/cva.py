"""Change vector analysis: the classic unsupervised baseline every learned method is compared with.

The change magnitude is the Euclidean norm of the per-pixel difference of the stretched pair
(:mod:`core.data.magnitude`). An Otsu threshold over the whole pair separates change from no
change. The map is written as a probability-like raster (``magnitude / (2 * threshold)`` clipped
to [0, 1], so the Otsu threshold maps to 0.5) and as a 0/1 mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.callbacks import Callbacks
from core.data.magnitude import BLOCK, magnitude, pair_threshold
from core.io.geotiff import GeoTiffWriter
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.io.windows import block_windows

NODATA = -1.0
MASK_NODATA = 255


@dataclass(frozen=True)
class CvaResult:
    """Outputs of a CVA run: the probability-like map, the mask and the Otsu threshold."""

    probability: Path
    mask: Path
    threshold: float


def run_cva(
    pair: RasterPair,
    out: Path,
    mask_out: Path,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> CvaResult:
    """Compute CVA over the whole pair in two windowed passes and write both rasters.

    Args:
        pair: the open pair.
        out: probability-like GeoTIFF (float32, nodata -1).
        mask_out: 0/1 mask GeoTIFF (uint8, nodata 255).
        callbacks: progress, log and cancel.
        overwrite: replace existing outputs.
    """
    callbacks = callbacks or Callbacks()
    stretch = compute_stretch(pair)
    windows = block_windows(pair.grid.width, pair.grid.height, BLOCK)
    threshold = pair_threshold(pair, stretch, callbacks, share=0.5)
    callbacks.info(f"CVA Otsu threshold on the change magnitude: {threshold:.4f}")
    with (
        GeoTiffWriter(out, pair.grid, np.float32, nodata=NODATA, overwrite=overwrite) as prob,
        GeoTiffWriter(
            mask_out, pair.grid, np.uint8, nodata=MASK_NODATA, overwrite=overwrite
        ) as mask,
    ):
        prob.set_description(1, "change probability (CVA)")
        prob.set_metadata({"kdmsi_method": "cva", "kdmsi_threshold": "0.5"})
        for i, window in enumerate(windows):
            callbacks.check_canceled()
            data = pair.read(window)
            mag = magnitude(data.before, data.after, stretch)
            prob.write(window, np.where(data.valid, np.clip(mag / (2 * threshold), 0, 1), NODATA))
            mask.write(window, np.where(data.valid, mag >= threshold, MASK_NODATA))
            callbacks.progress(0.5 + 0.5 * (i + 1) / len(windows), "writing change map")
    return CvaResult(Path(out), Path(mask_out), threshold)
