"""The panel's threshold control: a slider over the probability map's own values, its value shown.

The slider moves in thousandths. After each detect it takes the range of the new map (so a map
whose values stop at 0.26 gets a slider that ends there) and the threshold ``kdmsi detect`` stored
in it; a value set that way is kept exactly (0.0937 stays 0.0937) until the user moves the slider.
"""

from __future__ import annotations

import math
from typing import Optional

from qgis.core import QgsRasterLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from kdmsi_qgis.probability import stored_threshold, value_range

SCALE = 1000  # slider steps per unit of probability


class ThresholdControl(QWidget):
    """A horizontal slider and a label showing its value with three decimals."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, SCALE)
        self.slider.setToolTip("Pixels at or above this change probability become polygons")
        self.label = QLabel()
        self.label.setMinimumWidth(self.label.fontMetrics().horizontalAdvance("0.0000"))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self._exact: Optional[float] = None
        self.slider.valueChanged.connect(self._moved)
        self._show()

    def value(self) -> float:
        """The threshold shown: the exact value last set, or the slider's position."""
        return self._exact if self._exact is not None else self.slider.value() / SCALE

    def set_value(self, value: float) -> None:
        """Show ``value`` (the slider's range grows to include it)."""
        self._set_range(min(value, self.minimum()), max(value, self.maximum()))
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * SCALE))
        self.slider.blockSignals(False)
        self._exact = float(value)
        self._show()

    def minimum(self) -> float:
        """The lowest value the slider reaches."""
        return self.slider.minimum() / SCALE

    def maximum(self) -> float:
        """The highest value the slider reaches."""
        return self.slider.maximum() / SCALE

    def set_range(self, low: float, high: float) -> None:
        """Let the slider reach ``low`` to ``high`` (and the value shown now)."""
        value = self.value()
        self._set_range(min(low, value), max(high, value))
        self._show()

    def follow_map(self, layer: QgsRasterLayer) -> float:
        """Take a probability map's value range and stored threshold (main thread).

        Args:
            layer: the probability raster ``kdmsi detect`` wrote.

        Returns:
            The threshold now shown.
        """
        low, high = value_range(layer)
        threshold = stored_threshold(layer)
        self._set_range(min(low, threshold), max(high, threshold))
        self.set_value(threshold)
        return threshold

    def _set_range(self, low: float, high: float) -> None:
        """Slider bounds in whole steps around ``low``..``high`` (never an empty range)."""
        first = math.floor(round(low * SCALE, 6))
        last = max(math.ceil(round(high * SCALE, 6)), first + 1)
        self.slider.blockSignals(True)
        self.slider.setRange(first, last)
        self.slider.blockSignals(False)

    def _moved(self, _position: int) -> None:
        """The user moved the slider: its position is the value now."""
        self._exact = None
        self._show()

    def _show(self) -> None:
        self.label.setText(f"{self.value():.3f}")
