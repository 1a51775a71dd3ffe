"""Process-wide settings of the ``kdmsi`` command line, applied once before any work.

Two defaults matter for memory and speed and are only set when the user has not chosen them:

- GDAL's block cache: GDAL keeps up to 5 % of the machine's memory of raster blocks (1.2 GB on a
  24 GB machine), which made the peak memory of ``kdmsi detect`` grow with the raster instead of
  staying flat. Reads here are per window, so a small cache costs little time.
- OpenMP's wait policy: busy-waiting threads (the default) steal the cores from each other and
  from other processes; passive waiting made training several times faster on a loaded 2-core
  machine (see docs/distributed.md). It must be set before torch is imported.
"""

from __future__ import annotations

import os

GDAL_CACHE_MB = 128


def configure_process(environ: dict[str, str] | None = None) -> None:
    """Apply the defaults above unless ``GDAL_CACHEMAX`` / ``OMP_WAIT_POLICY`` are already set.

    Args:
        environ: the environment to read and update (``os.environ`` when None).
    """
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "GDAL_CACHEMAX" not in env:
        from osgeo import gdal

        gdal.SetCacheMax(GDAL_CACHE_MB * 1024 * 1024)
