"""Choosing the pixel threshold from tile tags alone (never from pixel labels).

Rule: Otsu's threshold on the histogram of the student's probabilities over the valid pixels of
the changed-tagged tiles held out from training (all changed-tagged tiles when none are held
out). A changed tile mixes change and background, and Otsu splits that mixture; unchanged tiles
are left out because they hold background only and would pull the cut down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.otsu import otsu
from core.data.tilesets import TileSet

BINS = 256
FALLBACK = 0.5


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold and the rule that gave it."""

    value: float
    rule: str


def otsu_on_changed_tiles(tiles: TileSet, prob: np.ndarray) -> ThresholdChoice:
    """Otsu's threshold of ``prob`` over the valid pixels of the changed-tagged tiles.

    Args:
        tiles: the tiles (their tags and validity masks are used).
        prob: probabilities ``[N, T, T]`` of those tiles in [0, 1].

    Returns:
        The threshold; 0.5 when there is no changed-tagged tile.
    """
    changed = tiles.labels.astype(bool)
    pixels = prob[changed][tiles.valid[changed]]
    if pixels.size == 0:
        return ThresholdChoice(FALLBACK, "fixed 0.5 (no changed-tagged tile to choose from)")
    hist = np.histogram(pixels, bins=BINS, range=(0.0, 1.0))[0]
    value = otsu(hist, np.linspace(0.0, 1.0, BINS + 1))
    return ThresholdChoice(value, f"Otsu on {int(changed.sum())} changed-tagged tiles")
