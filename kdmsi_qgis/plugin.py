"""The plugin object: toolbar, Raster menu, panel, Processing provider; all removed on unload."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from qgis.core import QgsApplication, QgsProject, QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

from kdmsi_qgis.dock import KdmsiDock
from kdmsi_qgis.environment import InstallTask
from kdmsi_qgis.paths import icon_path
from kdmsi_qgis.provider import KdmsiProvider

MENU = "&KD-MSI"
SETTING_WHEELS = "kdmsi/wheels"  # a folder of wheels: "Install dependencies" runs offline
TOOLBAR = "KD-MSI"


class KdmsiPlugin:
    """Created by ``classFactory``; QGIS calls ``initGui`` and ``unload``."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.actions: list[QAction] = []
        self.toolbar: Optional[QToolBar] = None
        self.dock: Optional[KdmsiDock] = None
        self.provider: Optional[KdmsiProvider] = None
        self.install_task: Optional[InstallTask] = None

    def initGui(self) -> None:
        """Add the toolbar, menu entries, panel and Processing provider."""
        self.provider = KdmsiProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)
        self.dock = KdmsiDock(self.iface, self.iface.mainWindow())
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.toolbar = self.iface.addToolBar(TOOLBAR)
        self.toolbar.setObjectName("KdmsiToolbar")
        dock = self.dock
        self.panel_action = self._action("panel", "KD-MSI panel", self.toggle_panel, True)
        self.tag_action = self._action("tag", "Tag tiles", self.tag_tiles, True)
        self._action("train", "Train", lambda: self._in_panel(dock.train))
        self._action("suggest", "Suggest tiles", lambda: self._in_panel(dock.suggest))
        self._action("detect", "Detect changes", lambda: self._in_panel(dock.detect))
        self._action("export", "Export changes…", lambda: self._in_panel(dock.export))
        self._action("install", "Install dependencies", self.install, toolbar=False)
        self.dock.visibilityChanged.connect(self.panel_action.setChecked)
        self.dock.ui.tag_button.toggled.connect(self.tag_action.setChecked)
        project = QgsProject.instance()
        project.readProject.connect(self._restore)
        project.cleared.connect(self._restore)

    def _restore(self, *_args: Any) -> None:
        """A project was read or cleared: show its state in the panel."""
        if self.dock is not None:
            self.dock.restore_project()

    def _action(
        self,
        icon: str,
        text: str,
        slot: Callable[..., Any],
        checkable: bool = False,
        toolbar: bool = True,
    ) -> QAction:
        """A toolbar button and Raster menu entry."""
        action = QAction(QIcon(icon_path(icon)), text, self.iface.mainWindow())
        action.setObjectName(f"kdmsi_{icon}")
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        if toolbar and self.toolbar is not None:
            self.toolbar.addAction(action)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
        return action

    def _in_panel(self, method: Callable[[], Any]) -> None:
        """Show the panel and run one of its actions."""
        assert self.dock is not None
        self.dock.show()
        method()

    def toggle_panel(self, checked: bool) -> None:
        """Show or hide the panel."""
        if self.dock is not None:
            self.dock.setVisible(checked)

    def tag_tiles(self, checked: bool) -> None:
        """Switch the tagging tool (through the panel's button)."""
        if self.dock is not None:
            self.dock.show()
            self.dock.ui.tag_button.setChecked(checked)
            self.tag_action.setChecked(self.dock.ui.tag_button.isChecked())

    def install(self) -> None:
        """Create the managed worker environment in the profile folder (in a task).

        The setting ``kdmsi/wheels`` (a folder of wheel files) makes the install offline.
        """
        wheels = QgsSettings().value(SETTING_WHEELS, "", type=str)
        self.install_task = InstallTask(wheel_dir=Path(wheels) if wheels else None)
        if self.dock is not None:
            self.install_task.line.connect(self.dock.ui.log_view.appendPlainText)
            self.dock.show()
        QgsApplication.taskManager().addTask(self.install_task)

    def unload(self) -> None:
        """Remove every action, menu entry, the toolbar, the panel and the provider."""
        project = QgsProject.instance()
        if self.dock is not None:
            for signal in (project.readProject, project.cleared):
                signal.disconnect(self._restore)
            self.dock.unload()
            self.iface.removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            if self.toolbar is not None:
                self.toolbar.removeAction(action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
