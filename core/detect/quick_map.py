"""The map ``detect --method auto`` draws, quickly: single scale, no flips, for scoring many tiles.

``kdmsi suggest`` and the benchmark's ``suggest`` strategies score every untagged tile to find
those where the map sees the most change, and the tagged tiles it contradicts. They score with
the map the user will see (the one chosen on the held-out tags after training), at single scale
so that thousands of tiles take seconds, and compare against that map's own single-scale
threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.data.magnitude import tile_magnitude
from core.data.tilesets import TileSet
from core.detect.flat_field import flatten_maps
from core.detect.fusion import fuse_tiles, pair_thresholds
from core.detect.predictors import make_predictor, predict_tiles
from core.models.model_file import ModelInfo

SINGLE = (1.0,)


@dataclass(frozen=True)
class QuickMap:
    """A model's chosen map at single scale.

    Attributes:
        method: ``kdmsi``, ``kdmsi-cva``, ``cam`` or ``cva`` (a refined model's student counts
            as ``kdmsi``: the refinement network needs context around each tile).
        threshold: the single-scale threshold that goes with it.
    """

    method: str
    threshold: float

    @property
    def needs_pair_threshold(self) -> bool:
        """True when the tiles must carry their pair's CVA threshold (read with that pass)."""
        return self.method in ("kdmsi-cva", "cva")


def quick_map(info: ModelInfo) -> QuickMap:
    """The single-scale version of the map chosen after training, and its threshold."""
    method = info.auto_method if info.auto_method in ("kdmsi-cva", "cam", "cva") else "kdmsi"
    return QuickMap(method, info.threshold_for(method, SINGLE))


def quick_scores(
    chosen: QuickMap,
    info: ModelInfo,
    states: dict,
    model_path: Path,
    tiles: TileSet,
    device: torch.device,
    batch_size: int = 8,
    dtype: torch.dtype | None = None,
) -> np.ndarray:
    """The map ``[N, T, T]`` of ``tiles`` (CVA scaled by each tile's pair threshold)."""
    if chosen.method == "cva":
        scale = 2.0 * pair_thresholds(tiles)[:, None, None]
        return np.clip(tile_magnitude(tiles.before, tiles.after) / scale, 0.0, 1.0)
    network = "cam" if chosen.method == "cam" else "kdmsi"
    predictor = make_predictor(
        network, info, states, model_path, device, SINGLE, False, dtype=dtype
    )
    prob = predict_tiles(predictor, tiles, device, batch_size)
    if chosen.method == "kdmsi":
        return flatten_maps(prob, info.student_field(SINGLE))
    if chosen.method != "kdmsi-cva":
        return prob
    return fuse_tiles(
        prob, tiles, info.cva_window, info.affinity_rounds, info.cva_standardised,
        info.field_for(SINGLE),
    )  # fmt: skip
