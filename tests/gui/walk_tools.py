"""What the GUI check (``gui_check.py``) uses besides its steps: configuration, its log,
screenshots, layers, and QGIS's exit (a prompt answered, a hang diagnosed).

Run inside QGIS (``run_gui_check.sh`` puts this folder on PYTHONPATH).
"""

from __future__ import annotations

import faulthandler
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QMessageBox

ENV = os.environ
WORK = Path(ENV.get("KDMSI_GUI_WORK", "/tmp/kdmsi-gui"))
SHOTS = Path(ENV.get("KDMSI_GUI_SHOTS", str(WORK / "shots")))
TIMEOUT_S = float(ENV.get("KDMSI_GUI_TIMEOUT", "900"))
SCREEN = (1366, 768)
CHANGED_TILES, UNCHANGED_TILES = 8, 10
MIN_CHANGED_FRACTION = 0.02
CHANGED_AREA = 0.04  # the threshold slider goes to the probability flagging this share
SETTLE_MS = 1500
EXIT_HUNG = 3  # QGIS did not close within 30 s of the exit action (run_gui_check.sh fails on it)


def log(text: str) -> None:
    """A line in WORK/gui_check.log (QGIS swallows stdout)."""
    with (WORK / "gui_check.log").open("a") as handle:
        handle.write(f"{time.strftime('%H:%M:%S')} {text}\n")


def screenshot(name: str) -> Path:
    """The whole X screen as a PNG, taken by ImageMagick's ``import``."""
    path = SHOTS / name
    subprocess.run(["/usr/bin/import", "-window", "root", str(path)], check=True, timeout=60)
    log(f"screenshot {path} ({path.stat().st_size} bytes)")
    return path


def rgb_layer(path: str, name: str, bands: list[int]) -> QgsRasterLayer:
    """A raster layer drawn with ``bands`` as red, green, blue and a 2-98 % stretch."""
    layer = QgsRasterLayer(path, name)
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open {path}")
    red, green, blue = (bands + [bands[-1]] * 3)[:3]
    layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), red, green, blue))
    layer.setContrastEnhancement(
        QgsContrastEnhancement.StretchToMinimumMaximum,
        QgsRasterMinMaxOrigin.CumulativeCut,
        layer.extent(),
    )
    return layer


def tiles_to_tag(tag_layer: Any, label_path: str) -> tuple[list[Any], list[Any]]:
    """Features of tiles to click: the most changed ones, and unchanged ones spread out.

    Without a label mask, every other tile is taken, alternating changed and unchanged.
    """
    features = list(tag_layer.getFeatures())
    if not label_path:
        return features[0:10:2], features[1:14:2]
    dataset = gdal.Open(label_path)  # kept: a band outlives no dataset
    band = dataset.GetRasterBand(1)
    fractions = []
    for f in features:
        window = [int(f[k]) for k in ("px_col", "px_row", "px_width", "px_height")]
        fractions.append(float(np.mean(band.ReadAsArray(*window) > 0)))
    order = np.argsort(fractions)[::-1]
    changed = [features[i] for i in order[:CHANGED_TILES] if fractions[i] >= MIN_CHANGED_FRACTION]
    clean = [features[i] for i in range(len(features)) if fractions[i] == 0.0]
    step = max(1, len(clean) // UNCHANGED_TILES)
    return changed, clean[::step][:UNCHANGED_TILES]


def answer_save_prompt(seen: tuple[str, ...] = ()) -> None:
    """Answer QGIS's "save the current project?" on exit with Discard, as a user would.

    The walk saved its project already; QGIS asks again because drawing marks it changed. The
    prompt is modal, so this timer runs inside its event loop; it looks again until QGIS is gone.
    Any other dialog is logged (once) and left open: the watchdog then reports the hang.
    """
    box = QApplication.activeModalWidget()
    if isinstance(box, QMessageBox):
        discard = box.button(QMessageBox.Discard)
        if box.text() not in seen:
            log(f"dialog on exit: {box.text()!r}" + (", answered Discard" if discard else ""))
            seen = (*seen, box.text())
        if discard is not None:
            discard.click()
    QTimer.singleShot(1000, lambda: answer_save_prompt(seen))


def exit_hung() -> None:
    """QGIS did not close: save where every thread is (Python and native), then end it."""
    with (WORK / "exit_hang_python.txt").open("w") as handle:
        faulthandler.dump_traceback(handle, all_threads=True)
    with (WORK / "exit_hang_gdb.txt").open("w") as handle:
        command = ["gdb", "-p", str(os.getpid()), "-batch", "-ex", "thread apply all bt 30"]
        try:
            subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:  # no gdb: the Python stacks remain
            handle.write(f"gdb did not run: {exc}\n")
    os._exit(EXIT_HUNG)
