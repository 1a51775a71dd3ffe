"""Benchmark 3: ``kdmsi vectorize`` against ``gdal_polygonize.py`` on the same large change mask.

Both run as child processes on the same 0/1 Byte mask (so both pay an interpreter start), in
alternation, ``repeats`` times, into a GeoPackage and into a Shapefile. ``gdal_polygonize.py``
gets the mask as its own mask band (``-mask``), so it outlines the change pixels only, as
``kdmsi vectorize`` does with 4-connectivity and no minimum area or simplification. The outputs
are compared by polygon count and total area (read back with OGR), and the time ratio is the
median of ``kdmsi`` over the median of GDAL's script.
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
        "--connectivity", "4", "--overwrite",
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


def run_vectorization(mask: Path, work: Path, repeats: int) -> dict:
    """Compare both tools on ``mask`` for each output format; see the module notes.

    ``probability_shp`` is the general path: ``kdmsi vectorize`` of a float32 probability raster
    (thresholding, polygonizing, per-polygon statistics) against ``gdal_polygonize.py`` of the
    mask it thresholds to.
    """
    from osgeo import gdal

    dataset = gdal.Open(str(mask))
    band = dataset.GetRasterBand(1)
    size = (band.XSize, band.YSize)
    changed = sum(
        int(np.count_nonzero(band.ReadAsArray(0, row, size[0], min(1024, size[1] - row))))
        for row in range(0, size[1], 1024)
    )
    del band, dataset
    return {
        "mask_px": list(size),
        "changed_px": changed,
        "repeats": repeats,
        "target_ratio": TARGET_RATIO,
        "formats": {suffix: _compare_format(mask, work, suffix, repeats) for suffix in FORMATS},
        "probability_shp": _compare_format(mask, work, "shp", repeats, probability_of(mask, work)),
    }
