"""Benchmark 3: ``kdmsi vectorize`` against ``gdal_polygonize.py`` on the same change mask.

Both run as child processes on the same 0/1 Byte mask (so both pay an interpreter start), in
alternation, ``repeats`` times, into a GeoPackage and into a Shapefile. ``gdal_polygonize.py``
gets the mask as its own mask band (``-mask``), so it outlines the change pixels only, as
``kdmsi vectorize`` does with 4-connectivity and no minimum area, peak rule or simplification.
``kdmsi`` also vectorizes a float32 probability raster that thresholds to that mask (the general
road: thresholding, labelling, per-polygon statistics) against GDAL's script on the mask. The
outputs are compared by polygon count and total area (read back with OGR), and the time ratio is
the median of ``kdmsi`` over the median of GDAL's script.

Two cases: *dense* change (many small polygons, the generated mask of :mod:`core.perf.inputs`)
and *sparse* change (:func:`make_sparse`: a few large polygons on a large raster, where the
passes over the whole raster weigh most).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from statistics import median

import numpy as np
from osgeo import ogr

from core.perf.child import ChildRun, kdmsi_command, run_child

FORMATS = {"gpkg": "GPKG", "shp": "ESRI Shapefile"}
TARGET_RATIO = 1.2
SPARSE_VERSION = 2  # 2: written with the blocks' maxima (core.io.block_maxima)
STRIP_ROWS = 512


def _remove(path: Path) -> None:
    """Remove an output and, for a shapefile, its sidecar files."""
    for part in path.parent.glob(f"{path.stem}.*"):
        part.unlink()


def _count_and_area(path: Path) -> tuple[int, float]:
    """Polygon count and total area of the first layer of a vector file."""
    ogr.UseExceptions()
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    total = 0.0
    for feature in layer:
        total += feature.GetGeometryRef().GetArea()
    return layer.GetFeatureCount(), total


def _gdal_command(mask: Path, out: Path, suffix: str) -> list[str]:
    script = shutil.which("gdal_polygonize.py")
    if script is None:
        raise RuntimeError("gdal_polygonize.py is not on PATH; install gdal-bin.")
    return [script, "-q", str(mask), "-mask", str(mask), "-f", FORMATS[suffix], str(out)]


def _timed(command: list[str], out: Path) -> ChildRun:
    _remove(out)
    run = run_child(command)
    run.check()
    return run


def probability_of(mask: Path, work: Path) -> Path:
    """A float32 probability raster whose values ``>= 0.5`` are exactly the mask's 1s."""
    from osgeo import gdal

    gdal.UseExceptions()
    path = work / f"{mask.stem}-probability.tif"
    source = gdal.Open(str(mask))
    width, height = source.RasterXSize, source.RasterYSize
    target = gdal.GetDriverByName("GTiff").Create(
        str(path), width, height, 1, gdal.GDT_Float32, ["TILED=YES", "COMPRESS=DEFLATE"]
    )
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    rng = np.random.default_rng(0)
    for row in range(0, height, 1024):
        rows = min(1024, height - row)
        ones = source.GetRasterBand(1).ReadAsArray(0, row, width, rows) > 0
        noise = rng.uniform(0.0, 0.45, (rows, width)).astype(np.float32)
        target.GetRasterBand(1).WriteArray(np.where(ones, 0.5 + noise, noise), 0, row)
    del source, target
    return path


def _compare_format(
    mask: Path, work: Path, suffix: str, repeats: int, prob: Path | None = None
) -> dict:
    """Time both tools into one format; ``kdmsi`` reads ``prob`` (default: the mask itself)."""
    ours_out, gdal_out = work / f"kdmsi-polygons.{suffix}", work / f"gdal-polygons.{suffix}"
    ours_cmd = kdmsi_command(
        "vectorize", "--prob", str(prob or mask), "--out", str(ours_out), "--threshold", "0.5",
        "--connectivity", "4", "--min-pixels", "0", "--peak-ratio", "1", "--overwrite",
    )  # fmt: skip
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(_timed(ours_cmd, ours_out))
        theirs.append(_timed(_gdal_command(mask, gdal_out, suffix), gdal_out))
    ours_count, ours_area = _count_and_area(ours_out)
    gdal_count, gdal_area = _count_and_area(gdal_out)
    ratio = median(r.wall_s for r in ours) / median(r.wall_s for r in theirs)
    result = {
        "kdmsi_s": [r.wall_s for r in ours],
        "gdal_s": [r.wall_s for r in theirs],
        "kdmsi_median_s": median(r.wall_s for r in ours),
        "gdal_median_s": median(r.wall_s for r in theirs),
        "time_ratio_kdmsi_over_gdal": ratio,
        "kdmsi_peak_rss_mb": max(r.peak_rss_mb for r in ours),
        "gdal_peak_rss_mb": max(r.peak_rss_mb for r in theirs),
        "kdmsi_count": ours_count,
        "gdal_count": gdal_count,
        "kdmsi_area": ours_area,
        "gdal_area": gdal_area,
        "same_count": ours_count == gdal_count,
        "same_area": abs(ours_area - gdal_area) <= 1e-9 * max(abs(gdal_area), 1.0),
        "meets_target": ratio <= TARGET_RATIO,
    }
    _remove(ours_out)
    _remove(gdal_out)
    return result


def _changed_pixels(mask: Path) -> tuple[list[int], int]:
    """Size ``[width, height]`` and number of nonzero pixels of a mask, read by strips."""
    from osgeo import gdal

    dataset = gdal.Open(str(mask))
    band = dataset.GetRasterBand(1)
    width, height = band.XSize, band.YSize
    changed = sum(
        int(np.count_nonzero(band.ReadAsArray(0, row, width, min(1024, height - row))))
        for row in range(0, height, 1024)
    )
    return [width, height], changed


def run_vectorization(
    mask: Path, work: Path, repeats: int, sparse: tuple[int, int] | None = None
) -> dict:
    """Compare both tools on ``mask`` for each output format; see the module notes.

    ``probability_shp`` and ``probability_gpkg`` are the general road: ``kdmsi vectorize`` of a
    float32 probability raster against ``gdal_polygonize.py`` of the mask it thresholds to.
    ``sparse`` (edge in pixels, number of change blobs) adds the same for the sparse case.
    """
    size, changed = _changed_pixels(mask)
    prob = probability_of(mask, work)
    results = {
        "mask_px": size,
        "changed_px": changed,
        "repeats": repeats,
        "target_ratio": TARGET_RATIO,
        "formats": {suffix: _compare_format(mask, work, suffix, repeats) for suffix in FORMATS},
        "probability_shp": _compare_format(mask, work, "shp", repeats, prob),
        "probability_gpkg": _compare_format(mask, work, "gpkg", repeats, prob),
    }
    if sparse is not None:
        results["sparse"] = run_sparse(work, *sparse, repeats)
    return results


def run_sparse(work: Path, size: int, blobs: int, repeats: int) -> dict:
    """The sparse case: a ``size`` px probability with ``blobs`` change polygons, both formats.

    ``plain_shp`` vectorizes a copy made by ``gdal_translate`` (same codec), which carries no
    trusted block maxima: a probability raster another tool wrote, read whole.
    """
    from osgeo import gdal

    prob, mask = make_sparse(work, size, blobs)
    size_px, changed = _changed_pixels(mask)
    plain = work / f"{prob.stem}-plain.tif"
    options = ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=3", "BIGTIFF=IF_SAFER"]
    gdal.Translate(str(plain), str(prob), creationOptions=options)
    try:
        return {
            "mask_px": size_px,
            "changed_px": changed,
            "blobs": blobs,
            "probability_shp": _compare_format(mask, work, "shp", repeats, prob),
            "probability_gpkg": _compare_format(mask, work, "gpkg", repeats, prob),
            "plain_shp": _compare_format(mask, work, "shp", repeats, plain),
        }
    finally:
        plain.unlink()


def _blobs(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[row, col, radius]`` of ``count`` discs, one per cell of a grid: they never touch."""
    cells = int(np.ceil(np.sqrt(count * 1.6)))
    cell = size / cells
    chosen = rng.choice(cells * cells, count, replace=False)
    centres = (np.stack(np.divmod(chosen, cells), axis=1) + 0.5) * cell
    centres += rng.uniform(-0.1, 0.1, centres.shape) * cell
    return np.column_stack([centres, rng.uniform(0.15, 0.35, count) * cell])


def _sparse_strip(
    row: int, rows: int, size: int, blobs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rows ``row..row+rows`` of the sparse probability (float32; nodata -1 on the left)."""
    smooth = 0.2 + 0.1 * np.sin(np.arange(size) / 300.0)
    value = np.clip(smooth + rng.normal(0.0, 0.1, (rows, size)), 0.0, 0.45).astype(np.float32)
    rows_at = np.arange(row, row + rows, dtype=np.float64)[:, None]
    for centre_row, centre_col, radius in blobs:
        if abs(centre_row - (row + rows / 2)) > radius + rows / 2 + 8:
            continue
        first, end = int(max(0, centre_col - radius - 8)), int(min(size, centre_col + radius + 8))
        cols = np.arange(first, end, dtype=np.float64)[None, :]
        wobble = 4.0 * np.sin(cols / 7.0) * np.cos(rows_at / 5.0)  # a ragged outline
        inside = np.hypot(rows_at - centre_row, cols - centre_col) + wobble < radius
        part = value[:, first:end]
        part[inside] = 0.5 + 0.5 * rng.random(int(inside.sum()), dtype=np.float32)
    value[:, : min(64, size // 16)] = -1.0  # nodata, as where B does not cover A
    return value


def make_sparse(folder: Path, size: int, blobs: int, seed: int = 0) -> tuple[Path, Path]:
    """Write (or reuse) the sparse case: a float32 probability and its 0/1 mask at 0.5.

    ``blobs`` wobbly discs of probability 0.5-1 (one polygon each) on a noisy background below
    0.45 with a nodata (-1) strip on the left, written as ``detect`` writes its output
    (:class:`~core.io.geotiff.GeoTiffWriter`: tiled, DEFLATE, floating-point predictor; no
    overviews, which vectorize does not read), strip by strip. The mask is a tiled DEFLATE Byte
    GeoTIFF. Returns ``(probability, mask)``.
    """
    from osgeo import gdal

    from core.io.geotiff import GeoTiffWriter
    from core.io.grid import Grid
    from core.io.windows import Window
    from core.perf.inputs import _create

    name = f"sparse-{size}px-{blobs}blobs-s{seed}-v{SPARSE_VERSION}"
    prob, mask = folder / f"{name}-probability.tif", folder / f"{name}-mask.tif"
    if prob.is_file() and mask.is_file():
        return prob, mask
    folder.mkdir(parents=True, exist_ok=True)
    gdal.UseExceptions()
    rng = np.random.default_rng(seed)
    layout = _blobs(size, blobs, rng)
    partial = mask.with_name(f".{mask.name}.partial")
    masks = _create(partial, size, 1)
    grid = Grid(size, size, masks.GetGeoTransform(), masks.GetProjection())
    with GeoTiffWriter(prob, grid, np.float32, nodata=-1.0, overwrite=True, overviews=False) as out:
        for row in range(0, size, STRIP_ROWS):
            value = _sparse_strip(row, min(STRIP_ROWS, size - row), size, layout, rng)
            out.write(Window(0, row, size, value.shape[0]), value)
            masks.GetRasterBand(1).WriteArray((value >= 0.5).astype(np.uint8), 0, row)
    del masks
    partial.replace(mask)
    return prob, mask
