"""Where the plugin's files are, in the source tree and in the installed zip.

Source tree: ``repo/kdmsi_qgis`` (the plugin), ``repo/resources``, ``repo/core``, ``repo/.venv``.
Zip: ``kdmsi_qgis/`` holds the plugin modules, ``core/``, ``resources/``, ``metadata.txt``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PLUGIN_DIR = Path(__file__).resolve().parent
PLUGIN_NAME = "kdmsi_qgis"


def _first_existing(*candidates: Path) -> Path:
    """The first candidate that exists, else the first one."""
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]


def resources_dir() -> Path:
    """The ``resources`` folder (inside the plugin in the zip, beside it in the source tree)."""
    return _first_existing(PLUGIN_DIR / "resources", PLUGIN_DIR.parent / "resources")


def resource(name: str) -> Path:
    """Path of one file in ``resources``."""
    return resources_dir() / name


def icon_path(name: str) -> str:
    """Path of an SVG icon in ``resources`` as a string (``name`` without ``.svg``)."""
    return str(resource(f"{name}.svg"))


def core_root() -> Path:
    """The folder that contains the ``core`` package (goes on the worker's PYTHONPATH)."""
    if (PLUGIN_DIR / "core" / "__init__.py").exists():
        return PLUGIN_DIR
    return PLUGIN_DIR.parent


def core_defaults() -> dict[str, Any]:
    """``core/defaults.json``: the defaults and option sets the command line declares once.

    Read as data, so the plugin shows the worker's own defaults without importing ``core``.
    """
    path = core_root() / "core" / "defaults.json"
    return json.loads(path.read_text(encoding="utf-8"))


def metadata_path() -> Path:
    """``metadata.txt`` of the plugin."""
    return _first_existing(PLUGIN_DIR / "metadata.txt", PLUGIN_DIR.parent / "metadata.txt")


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment (POSIX or Windows layout)."""
    if sys.platform.startswith("win"):
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def source_tree_venv() -> Path:
    """The repository's ``.venv`` beside the plugin in the source tree."""
    return PLUGIN_DIR.parent / ".venv"
