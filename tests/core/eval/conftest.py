"""Fixtures of the benchmark tests: tiny synthetic dataset folders in the A/B/label layout."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

TWO_PAIRS = ((0, 3), (1, 2))


def _family(
    root: Path, write_raster: Callable, scene: Callable, seed: int, pairs=TWO_PAIRS
) -> Path:
    """64 px GeoTIFF pairs; in each, the listed 32 px tiles (0-3) hold a new bright square."""
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True)
    for k, changed in enumerate(pairs):
        before = scene(64, 64, seed=seed + k)
        after, label = before.copy(), np.zeros((64, 64), dtype=np.uint8)
        for tile in changed:
            r, c = 32 * (tile // 2) + 6, 32 * (tile % 2) + 8
            after[:, r : r + 12, c : c + 14] = 250
            label[r : r + 12, c : c + 14] = 1
        write_raster(root / "A" / f"p{k}.tif", before)
        write_raster(root / "B" / f"p{k}.tif", after)
        write_raster(root / "label" / f"p{k}.tif", label)
    return root


@pytest.fixture(name="write_family", scope="session")
def write_family_fixture(write_raster, scene) -> Callable[..., Path]:
    """``write_family(root, seed, pairs)``: a dataset folder of 64 px pairs with known change."""

    def write(root: Path, seed: int, pairs=TWO_PAIRS) -> Path:
        return _family(root, write_raster, scene, seed, pairs)

    return write
