"""A small deterministic, georeferenced synthetic scene for the demo and fast tests.

It is clearly synthetic: a smooth textured landscape with roads and rectangular "buildings"; the
after image adds new neighbourhoods (bare-soil blocks with new roofs: the change), a global
brightness shift and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.io.geotiff import GeoTiffWriter
from core.io.grid import Grid
from core.io.windows import Window

UTM33N_WKT_EPSG = 32633


@dataclass(frozen=True)
class SceneFiles:
    """Paths of a generated scene."""

    before: Path
    after: Path
    label: Path


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: random values on a coarse grid, bilinearly upsampled to ``size``."""
    coarse = rng.random((cells + 1, cells + 1))
    x = np.linspace(0, cells, size, endpoint=False)
    i = x.astype(int)
    f = x - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _draw_buildings(
    image: np.ndarray,
    rng: np.random.Generator,
    count: int,
    box: tuple[int, int, int, int],
    largest: int = 24,
) -> None:
    """Draw ``count`` bright roofs (4 to ``largest`` px) with a shadow edge inside ``box``.

    ``box`` is (row, col, rows, cols).
    """
    top, left, rows, cols = box
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(4, max(5, min(largest, rows // 3, cols // 3)), size=2))
        r = top + int(rng.integers(0, max(1, rows - h - 2)))
        c = left + int(rng.integers(0, max(1, cols - w - 2)))
        image[:, r : r + h, c : c + w] = (
            rng.uniform(0.6, 0.95) * np.array([1.0, 0.9, 0.85])[:, None, None]
        )
        image[:, r + h : r + h + 2, c + 1 : c + w + 1] *= 0.5


def _add_developments(
    image: np.ndarray, rng: np.random.Generator, count: int, mask: np.ndarray
) -> None:
    """New neighbourhoods: bare-soil blocks with new roofs, marked as change in ``mask``."""
    size = image.shape[1]
    for _ in range(count):
        rows, cols = (int(v) for v in rng.integers(size // 20 + 4, size // 9 + 6, size=2))
        top = int(rng.integers(0, size - rows))
        left = int(rng.integers(0, size - cols))
        image[:, top : top + rows, left : left + cols] = np.array([0.62, 0.52, 0.40])[:, None, None]
        _draw_buildings(image, rng, max(2, rows * cols // 300), (top, left, rows, cols))
        mask[top : top + rows, left : left + cols] = True


def make_scene(folder: Path, size: int = 1024, seed: int = 7) -> SceneFiles:
    """Write ``before.tif``, ``after.tif`` (3-band uint8) and ``change.tif`` (0/255) in EPSG:32633.

    Args:
        folder: output folder (created).
        size: edge in pixels (0.5 m pixels).
        seed: random seed; the same seed gives the same scene.
    """
    from osgeo import osr

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ground = 0.25 + 0.35 * _smooth_noise(rng, size, 6) + 0.08 * _smooth_noise(rng, size, 48)
    before = np.stack([ground * 0.9, ground * 1.05, ground * 0.8])
    before[:, size // 3 : size // 3 + 6, :] = 0.45
    before[:, :, size // 2 : size // 2 + 6] = 0.45
    _draw_buildings(before, rng, size // 20, (0, 0, size, size))
    after = before.copy()
    change = np.zeros((size, size), dtype=bool)
    _add_developments(after, rng, max(2, size // 80), change)
    after = after * 1.06 + 0.02
    noise = rng.normal(0, 0.02, size=(2, 3, size, size))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(UTM33N_WKT_EPSG)
    grid = Grid(size, size, (500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5), srs.ExportToWkt())
    files = SceneFiles(folder / "before.tif", folder / "after.tif", folder / "change.tif")
    whole = Window(0, 0, size, size)
    for path, image in ((files.before, before + noise[0]), (files.after, after + noise[1])):
        with GeoTiffWriter(path, grid, np.uint8, bands=3, overwrite=True, overviews=False) as out:
            for band in range(3):
                out.write(whole, np.clip(image[band] * 255, 0, 255).round(), band=band + 1)
    with GeoTiffWriter(files.label, grid, np.uint8, overwrite=True, overviews=False) as out:
        out.write(whole, change.astype(np.uint8) * 255)
    return files
