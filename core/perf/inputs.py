"""Inputs of the performance benchmarks, generated under a work folder and reused between runs.

Pairs are synthetic, georeferenced (EPSG:32633, 0.5 m pixels), 3-band uint8, tiled and
DEFLATE-compressed GeoTIFFs written strip by strip, so a 16,000 px pair never sits in memory: a
smooth two-octave landscape with rectangular roofs; the after image adds new neighbourhoods
(bare soil with other roofs, the change, also written as a 0/255 label), a brightness shift and
sensor noise. A finished file is renamed from a partial name, and an existing one is reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

GENERATOR_VERSION = 1
STRIP_ROWS = 512
ROOF_CELL = 32
DEVELOPMENT_CELL = 256
_CREATE = ["TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1", "PREDICTOR=2", "BIGTIFF=IF_SAFER"]


@dataclass(frozen=True)
class PairPaths:
    """The files of one generated pair."""

    before: Path
    after: Path
    label: Path

    @property
    def exists(self) -> bool:
        """True when all three files are complete (a partial file has another name)."""
        return self.before.is_file() and self.after.is_file() and self.label.is_file()


@dataclass(frozen=True)
class _Layout:
    """The random layout of a scene, drawn once per scene on coarse cells."""

    coarse: np.ndarray
    fine: np.ndarray
    roofs: np.ndarray
    new_roofs: np.ndarray
    developed: np.ndarray


def _draw_roofs(rng: np.random.Generator, cells: int, density: float) -> np.ndarray:
    """Per roof cell ``[on, top, left, height, width, brightness*100]`` as int32 ``[6, n, n]``."""
    size = rng.integers(6, ROOF_CELL - 6, size=(2, cells, cells))
    top = rng.integers(1, ROOF_CELL - size[0] - 1 + 1)
    left = rng.integers(1, ROOF_CELL - size[1] - 1 + 1)
    on = rng.random((cells, cells)) < density
    shade = rng.integers(60, 96, size=(cells, cells))
    return np.stack([on, top, left, size[0], size[1], shade]).astype(np.int32)


def _layout(size: int, seed: int, development: float) -> _Layout:
    rng = np.random.default_rng(seed)
    roof_cells = -(-size // ROOF_CELL)
    return _Layout(
        coarse=rng.random((size // 256 + 2, size // 256 + 2)).astype(np.float32),
        fine=rng.random((size // 32 + 2, size // 32 + 2)).astype(np.float32),
        roofs=_draw_roofs(rng, roof_cells, 0.3),
        new_roofs=_draw_roofs(rng, roof_cells, 0.6),
        developed=rng.random((-(-size // DEVELOPMENT_CELL),) * 2) < development,
    )


def _smooth(coarse: np.ndarray, cell: int, rows: np.ndarray, width: int) -> np.ndarray:
    """Bilinear upsampling of ``coarse`` (one value per ``cell`` px) at ``rows`` x ``width``."""
    y, x = rows / cell, np.arange(width) / cell
    i, j = y.astype(int), x.astype(int)
    fy, fx = (y - i)[:, None].astype(np.float32), (x - j).astype(np.float32)
    along = coarse[i] * (1 - fy) + coarse[i + 1] * fy
    return along[:, j] * (1 - fx) + along[:, j + 1] * fx


def _roof_value(roofs: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """Roof brightness (0 where no roof) of every pixel of the strip."""
    ci, cj = (rows // ROOF_CELL)[:, None], (np.arange(width) // ROOF_CELL)[None, :]
    y, x = (rows % ROOF_CELL)[:, None], (np.arange(width) % ROOF_CELL)[None, :]
    on, top, left, height, wide, shade = (part[ci, cj] for part in roofs)
    inside = (on > 0) & (y >= top) & (y < top + height) & (x >= left) & (x < left + wide)
    return np.where(inside, shade / 100.0, 0.0).astype(np.float32)


def _strip(layout: _Layout, row: int, rows: int, width: int, rng: np.random.Generator) -> tuple:
    """Before, after (``[3, rows, width]`` uint8) and the change label of one strip."""
    index = np.arange(row, row + rows)
    ground = 0.25 + 0.35 * _smooth(layout.coarse, 256, index, width)
    ground += 0.1 * _smooth(layout.fine, 32, index, width)
    roof = _roof_value(layout.roofs, index, width)
    tint = np.array([0.9, 1.05, 0.8], np.float32)[:, None, None]
    before = np.where(roof > 0, roof * 0.95, ground)[None] * tint
    developed = layout.developed[
        (index // DEVELOPMENT_CELL)[:, None], (np.arange(width) // DEVELOPMENT_CELL)[None, :]
    ]
    new_roof = _roof_value(layout.new_roofs, index, width)
    soil = np.where(new_roof > 0, new_roof, 0.55)[None] * np.array([1.1, 0.95, 0.75])[:, None, None]
    after = np.where(developed[None], soil, before) * 1.06 + 0.02
    images = []
    for image in (before, after):
        noisy = image * 255 + rng.normal(0, 4, image.shape).astype(np.float32)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return images[0], images[1], developed.astype(np.uint8) * 255


def _create(path: Path, size: int, bands: int) -> gdal.Dataset:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path), size, size, bands, gdal.GDT_Byte, _CREATE
    )
    dataset.SetGeoTransform((500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5))
    dataset.SetProjection(srs.ExportToWkt())
    return dataset


def make_pair(folder: Path, size: int, seed: int = 0, development: float = 0.15) -> PairPaths:
    """Write (or reuse) a ``size`` x ``size`` pair in ``folder``: before, after and label.

    Args:
        folder: created if missing; files are named after the size, seed and generator version.
        size: edge in pixels.
        seed: random seed of the layout and noise.
        development: fraction of 256 px cells turned into new neighbourhoods (the change).
    """
    gdal.UseExceptions()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{size}px-s{seed}-d{round(development * 100)}-v{GENERATOR_VERSION}"
    paths = PairPaths(*(folder / f"{part}-{stem}.tif" for part in ("before", "after", "label")))
    if paths.exists:
        return paths
    partial = [p.with_name(f".{p.name}.partial") for p in (paths.before, paths.after, paths.label)]
    datasets = [
        _create(partial[0], size, 3),
        _create(partial[1], size, 3),
        _create(partial[2], size, 1),
    ]
    layout = _layout(size, seed, development)
    rng = np.random.default_rng(seed + 1)
    for row in range(0, size, STRIP_ROWS):
        rows = min(STRIP_ROWS, size - row)
        before, after, label = _strip(layout, row, rows, size, rng)
        for dataset, image in zip(datasets[:2], (before, after)):
            for band in range(3):
                dataset.GetRasterBand(band + 1).WriteArray(image[band], 0, row)
        datasets[2].GetRasterBand(1).WriteArray(label, 0, row)
    del datasets  # closes and flushes the files
    for source, target in zip(partial, (paths.before, paths.after, paths.label)):
        source.replace(target)
    return paths


def make_dataset(folder: Path, pairs: int, size: int = 512) -> Path:
    """Write (or reuse) a training dataset folder in the A/B/label layout of ``core.data.datasets``.

    Each pair is a ``size`` px generated scene (30 % of its 256 px cells developed), so tiles of
    128 or 256 px get both tags.
    """
    root = folder / f"dataset-{pairs}x{size}px-v{GENERATOR_VERSION}"
    if (root / "done").is_file():
        return root
    scenes = folder / "scenes"
    for part in ("A", "B", "label"):
        (root / part).mkdir(parents=True, exist_ok=True)
    for index in range(pairs):
        paths = make_pair(scenes, size, seed=100 + index, development=0.3)
        for part, source in zip(("A", "B", "label"), (paths.before, paths.after, paths.label)):
            target = root / part / f"pair{index:03d}.tif"
            target.unlink(missing_ok=True)
            target.symlink_to(source.resolve())
    (root / "done").write_text("complete\n")
    return root


def make_mask(folder: Path, size: int, seed: int = 0) -> Path:
    """Write (or reuse) a 0/1 Byte change mask: smooth blobs with ragged, speckled edges."""
    gdal.UseExceptions()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mask-{size}px-s{seed}-v{GENERATOR_VERSION}.tif"
    if path.is_file():
        return path
    partial = path.with_name(f".{path.name}.partial")
    dataset = _create(partial, size, 1)
    layout = _layout(size, seed, 0.0)
    rng = np.random.default_rng(seed + 1)
    for row in range(0, size, STRIP_ROWS):
        index = np.arange(row, min(row + STRIP_ROWS, size))
        value = _smooth(layout.coarse, 256, index, size) + 0.5 * _smooth(
            layout.fine, 32, index, size
        )
        value += rng.normal(0, 0.04, value.shape).astype(np.float32)
        mask = (value >= 1.0) | (_roof_value(layout.roofs, index, size) > 0.9)
        dataset.GetRasterBand(1).WriteArray(mask.astype(np.uint8), 0, row)
    del dataset
    partial.replace(path)
    return path


def make_model(folder: Path, tile: int = 128) -> Path:
    """Write (or reuse) a model file of untrained, ImageNet-initialised EfficientNet-Lite0 networks.

    Weights do not change the speed; the thresholds are the fixed 0.5.
    """
    import torch

    from core.models.model_file import ModelInfo, save_model
    from core.models.teacher_student import CamConfig, TeacherStudent

    path = folder / f"model-efficientnet-lite0-tile{tile}.pt"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    pair = TeacherStudent(CamConfig(backbone="efficientnet-lite0", pretrained=True))
    info = ModelInfo(
        "efficientnet-lite0", "minus", "cat", 16, [1, 2, 3], tile,
        threshold_rule="fixed 0.5 (untrained benchmark model)",
        train_summary={"note": "ImageNet initialisation only, for speed measurements"},
    )  # fmt: skip
    save_model(
        path, info, {"student": pair.student.state_dict(), "teacher": pair.teacher.state_dict()}
    )
    return path
