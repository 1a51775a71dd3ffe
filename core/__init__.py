"""kdmsi core: headless weakly supervised change detection (KD-MSI) for raster pairs.

The package never imports QGIS or Qt. Heavy dependencies (torch) are imported only by the
modules that need them, so quick commands (grid, vectorize, evaluate) start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
