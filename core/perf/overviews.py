"""Part of benchmark 2: building the internal overviews of ``detect``'s probability output.

``kdmsi detect`` writes its float32 probability through :class:`core.io.geotiff.GeoTiffWriter`,
which builds internal overviews (AVERAGE, DEFLATE) before renaming the file into place. This
times that step alone, at the sizes of the memory benchmark, on a stand-in of the output: a
noisy float32 probability with a nodata border, written once strip by strip with the writer
(``overviews=False``) and reused; each measurement copies it and builds the overviews in a fresh
child process (``python -m core.perf.overviews FILE``, with ``kdmsi``'s process settings),
which reports the seconds of the build and whose peak memory shows it stays flat (GDAL reads and
writes through its block cache, which ``kdmsi`` bounds). The file-size increase is what the
overviews add.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from core.perf.child import run_child

STANDIN_VERSION = 1
STRIP_ROWS = 512
BORDER = 64  # nodata columns on the left, as where B does not cover A


def make_probability(folder: Path, size: int, seed: int = 0) -> Path:
    """Write (or reuse) a ``size`` x ``size`` float32 probability without overviews.

    Values are a smooth field in [0, 1] plus pixel noise (compressing about as poorly as a real
    map), with nodata (-1) in the first :data:`BORDER` columns.
    """
    from core.io.geotiff import GeoTiffWriter
    from core.io.grid import Grid
    from core.io.windows import Window

    path = folder / f"probability-{size}px-s{seed}-v{STANDIN_VERSION}.tif"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = rng.random(size // 256 + 2).astype(np.float32)
    grid = Grid(size, size, (500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5))
    with GeoTiffWriter(path, grid, np.float32, nodata=-1.0, overviews=False) as out:
        for row in range(0, size, STRIP_ROWS):
            rows = min(STRIP_ROWS, size - row)
            smooth = np.interp(np.arange(size) / 256, np.arange(coarse.size), coarse)
            value = smooth[None, :] + rng.normal(0, 0.1, (rows, size))
            value = np.clip(value, 0, 1).astype(np.float32)
            value[:, :BORDER] = -1.0
            out.write(Window(0, row, size, rows), value)
    return path


def _measure(source: Path, work: Path) -> dict:
    """Copy ``source``, build its overviews in a child process and measure time, size, memory."""
    target = work / f"overviews-{source.name}"
    shutil.copyfile(source, target)
    try:
        run = run_child([sys.executable, "-m", "core.perf.overviews", str(target)])
        run.check()
        after = target.stat().st_size
    finally:
        target.unlink(missing_ok=True)
    (report,) = [event for _t, event in run.events if "build_s" in event]
    before = source.stat().st_size
    return {
        "levels": report["levels"],
        "build_s": report["build_s"],
        "file_mb": before / 2**20,
        "with_overviews_mb": after / 2**20,
        "increase_mb": (after - before) / 2**20,
        "increase_pct": 100.0 * (after - before) / before,
        "peak_rss_mb": run.peak_rss_mb,
    }


def run_overviews(work: Path, sizes: list[int]) -> dict:
    """Time the overview build of a ``size`` px probability output for each of ``sizes``.

    Raises:
        RuntimeError: when a build fails.
    """
    rows = []
    for size in sizes:
        source = make_probability(work, size)
        megapixels = size * size / 1e6
        row = {"size": size, "megapixels": megapixels, **_measure(source, work)}
        row["mp_per_s"] = megapixels / row["build_s"] if row["build_s"] else 0.0
        rows.append(row)
    return {"rows": rows, "resampling": "AVERAGE", "compression": "DEFLATE"}


def main(argv: list[str]) -> int:
    """Build the overviews of the GeoTIFF ``argv[0]`` and print ``{"build_s", "levels"}``.

    The process gets ``kdmsi``'s settings first (its GDAL block cache above all, which bounds
    the memory of the build), as ``detect`` has them when it builds its outputs' overviews.
    """
    from osgeo import gdal

    from core.io.overviews import build_overviews
    from core.runtime.process import configure_process

    configure_process()
    gdal.UseExceptions()
    start = time.perf_counter()
    dataset = gdal.Open(argv[0], gdal.GA_Update)
    levels = build_overviews(dataset, np.float32)
    dataset.FlushCache()
    dataset = None
    print(json.dumps({"build_s": time.perf_counter() - start, "levels": levels}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
