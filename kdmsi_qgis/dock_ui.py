"""The widgets of the KD-MSI panel, built in code (no .ui file to keep in sync)."""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from kdmsi_qgis.paths import icon_path
from kdmsi_qgis.settings import BACKBONES, DEVICES, EDGES_TIP, Options
from kdmsi_qgis.threshold import ThresholdControl

COMBO_CHARS = 6  # long layer names do not widen the panel (about 330 px on a 1366 px screen)


def _button(text: str, icon: str = "", tip: str = "") -> QPushButton:
    """A push button with an optional resource icon and tooltip."""
    button = QPushButton(QIcon(icon_path(icon)), text) if icon else QPushButton(text)
    button.setToolTip(tip)
    return button


def _narrow(combo: QComboBox) -> QComboBox:
    """A combo box whose width does not follow its longest item (long layer names)."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(COMBO_CHARS)
    combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
    return combo


def _form(box: QGroupBox) -> QFormLayout:
    """A form whose labels go above their fields when the panel is narrow."""
    form = QFormLayout(box)
    form.setRowWrapPolicy(QFormLayout.WrapLongRows)
    return form


def _row(*widgets: QWidget) -> QWidget:
    """Widgets side by side."""
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


class PanelWidgets(QWidget):
    """Every control of the panel as an attribute; no behaviour beyond showing options."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addWidget(self._data_box())
        layout.addWidget(self._tag_box())
        layout.addWidget(self._model_box())
        layout.addWidget(self._result_box())
        layout.addWidget(self._run_box(), 1)

    def show_options(self, options: Options) -> None:
        """Show saved parameters in the widgets."""
        self.bands_edit.setText(options.bands)
        self.tile_spin.setValue(options.tile)
        self.backbone_combo.setCurrentText(options.backbone)
        self.epochs_spin.setValue(options.epochs)
        self.edges_check.setChecked(options.follow_edges)
        self.device_combo.setCurrentText(options.device)
        self.out_dir.setFilePath(options.out_dir)
        self.threshold.set_value(options.threshold)
        self.min_pixels_spin.setValue(options.min_pixels)

    def shown_options(self) -> Options:
        """The parameters the widgets show."""
        return Options(
            bands=self.bands_edit.text().strip(),
            tile=self.tile_spin.value(),
            backbone=self.backbone_combo.currentText(),
            epochs=self.epochs_spin.value(),
            follow_edges=self.edges_check.isChecked(),
            device=self.device_combo.currentText(),
            out_dir=self.out_dir.filePath(),
            threshold=self.threshold.value(),
            min_pixels=self.min_pixels_spin.value(),
        )

    def _data_box(self) -> QGroupBox:
        """Pair, bands, tile size, output folder."""
        box = QGroupBox("Images")
        form = _form(box)
        self.before_combo = _narrow(QgsMapLayerComboBox())
        self.after_combo = _narrow(QgsMapLayerComboBox())
        for combo in (self.before_combo, self.after_combo):
            combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
            combo.setAllowEmptyLayer(True)
        self.bands_edit = QLineEdit()
        self.bands_edit.setPlaceholderText("first three, e.g. 3,2,1")
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(32, 2048)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setSuffix(" px")
        self.out_dir = QgsFileWidget()
        self.out_dir.setStorageMode(QgsFileWidget.GetDirectory)
        form.addRow("Before", self.before_combo)
        form.addRow("After", self.after_combo)
        form.addRow("Bands", self.bands_edit)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Output folder", self.out_dir)
        return box

    def _tag_box(self) -> QGroupBox:
        """Tag layer, grid creation, tagging tool, counts."""
        box = QGroupBox("Tags")
        form = _form(box)
        self.tags_combo = _narrow(QgsMapLayerComboBox())
        self.tags_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.tags_combo.setAllowEmptyLayer(True)
        self.grid_button = _button("Create tile grid", "icon", "Run `kdmsi grid` over the pair")
        self.tag_button = _button(
            "Tag tiles", "tag", "Left click: changed; right click: unchanged; Shift: clear"
        )
        self.tag_button.setCheckable(True)
        self.undo_button = _button("Undo", "undo", "Undo the last tags (Ctrl+Z on the map)")
        self.suggest_button = _button(
            "Suggest tiles",
            "suggest",
            "After a training: outline the untagged tiles where the model sees the most change "
            "(orange: tag them, changed or unchanged, and train again) and the tags it disagrees "
            "with (blue)",
        )
        self.counts_label = QLabel("no tag layer")
        self.counts_label.setWordWrap(True)
        form.addRow("Tag layer", self.tags_combo)
        form.addRow(_row(self.grid_button, self.tag_button))
        form.addRow(_row(self.undo_button, self.suggest_button))
        form.addRow("Tiles", self.counts_label)
        return box

    def _model_box(self) -> QGroupBox:
        """Backbone, epochs, device, train and detect."""
        box = QGroupBox("Model")
        form = _form(box)
        self.backbone_combo = _narrow(QComboBox())
        self.backbone_combo.addItems(BACKBONES)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.edges_check = QCheckBox("Follow colour edges")
        self.edges_check.setToolTip(EDGES_TIP)
        self.device_combo = _narrow(QComboBox())
        self.device_combo.addItems(DEVICES)
        self.python_file = QgsFileWidget()
        self.python_file.setStorageMode(QgsFileWidget.GetFile)
        self.python_file.lineEdit().setPlaceholderText("found automatically (Check says which)")
        self.python_file.setToolTip(
            "The Python that runs training and detection; it needs torch. Leave empty to use "
            "the one Raster > KD-MSI > Install dependencies made."
        )
        self.check_button = _button("Check", tip="Ask the worker which Python, torch and GPU")
        self.device_label = QLabel("worker not checked")
        self.device_label.setWordWrap(True)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        self.open_model_button = _button("Open model…", tip="Use a model trained before (model.pt)")
        self.train_button = _button("Train", "train", "Train KD-MSI from the tags")
        self.detect_button = _button("Detect changes", "detect", "Change map and polygons")
        self.resume_button = _button("Resume training")
        self.resume_button.setEnabled(False)
        form.addRow("Backbone", self.backbone_combo)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Aerial photos", self.edges_check)
        form.addRow("Device", self.device_combo)
        form.addRow("Worker Python", self.python_file)
        form.addRow(self.check_button, self.device_label)
        form.addRow("Model", self.model_label)
        form.addRow(_row(self.open_model_button, self.resume_button))
        form.addRow(_row(self.train_button, self.detect_button))
        return box

    def _result_box(self) -> QGroupBox:
        """Threshold slider, re-vectorize, export."""
        box = QGroupBox("Changes")
        form = _form(box)
        self.threshold = ThresholdControl()
        self.threshold_slider = self.threshold.slider
        self.threshold_label = self.threshold.label
        self.min_pixels_spin = QSpinBox()
        self.min_pixels_spin.setRange(0, 1_000_000)
        self.min_pixels_spin.setSuffix(" px")
        self.min_pixels_spin.setToolTip(
            "Change regions of fewer pixels get no polygon (0 keeps every one); Re-vectorize "
            "applies a new value."
        )
        self.vectorize_button = _button("Re-vectorize", tip="Polygons at this threshold")
        self.export_button = _button("Export…", "export", "Shapefile or GeoPackage")
        form.addRow("Threshold", self.threshold)
        form.addRow("Smallest polygon", self.min_pixels_spin)
        form.addRow(_row(self.vectorize_button, self.export_button))
        return box

    def _run_box(self) -> QGroupBox:
        """Progress, cancel, log."""
        box = QGroupBox("Worker")
        layout = QVBoxLayout(box)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.diagnostics_button = _button(
            "Copy diagnostics", tip="Versions, the worker and this log, for a bug report"
        )
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        layout.addWidget(self.progress)
        layout.addWidget(_row(self.diagnostics_button, self.cancel_button))
        layout.addWidget(self.log_view, 1)
        return box


def scrolling(widget: QWidget) -> QScrollArea:
    """Wrap the panel in a scroll area (docks are often short)."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    # Wide enough for every control: a panel scrolled sideways cuts its labels' first letters.
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    frame = 2 * area.frameWidth() + area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(widget.minimumSizeHint().width() + frame)
    return area
