"""The panel's setup actions: the worker's Python, checking it, diagnostics, opening a model.

:class:`SetupActions` is mixed into :class:`kdmsi_qgis.dock.KdmsiDock`; it uses the panel's
``ui``, ``state``, ``message``, ``options``, ``show_model`` and ``save_project_state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from qgis.core import Qgis
from qgis.PyQt.QtWidgets import QApplication

from kdmsi_qgis import panel_state
from kdmsi_qgis.environment import diagnostics, probe_worker
from kdmsi_qgis.worker import choose_python


class SetupActions:
    """Worker Python, Check, Copy diagnostics and Open model of the panel."""

    ui: Any
    state: Any

    def open_model(self, path: Optional[str] = None) -> Optional[str]:
        """Use a model trained before (asks for the file when ``path`` is None)."""
        start = str(Path(self.state.model).parent) if self.state.model else self.options().out_dir
        path = path or panel_state.ask_model_path(self, start)
        if path is None:
            return None
        problem = panel_state.model_problem(path)
        if problem is not None:
            self.message(problem, Qgis.Warning)
            return None
        self.state.model = str(Path(path))
        self.show_model()
        self.save_project_state()
        self.message(f"Model opened: {path}. Detect and Suggest use it now.", Qgis.Info)
        return self.state.model

    def set_worker_python(self, path: str) -> None:
        """Run the worker with this Python from now on (empty: found automatically)."""
        problem = choose_python(path.strip())
        if problem is not None:
            self.message(problem, Qgis.Warning)
            return
        self.ui.device_label.setText("worker not checked")

    def copy_diagnostics(self) -> str:
        """Put versions, the worker and the log on the clipboard (for a bug report)."""
        text = diagnostics(self.ui.device_label.text(), self.ui.log_view.toPlainText())
        QApplication.clipboard().setText(text)
        self.message("Diagnostics copied to the clipboard: paste them into your report.")
        return text

    def check_worker(self) -> None:
        """Ask the worker for its Python, torch and GPU (in a task)."""
        self.ui.device_label.setText("checking…")
        self._probe = probe_worker(self.ui.device_label.setText)
