"""KD-MSI change detection: QGIS plugin entry point.

The plugin never imports torch or ``core``; it drives ``core`` through its command line in a
worker process (see ``worker.py``).
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:
    """QGIS's entry point: the plugin object for this interface."""
    from kdmsi_qgis.plugin import KdmsiPlugin

    return KdmsiPlugin(iface)
