"""The plugin loads through classFactory; initGui adds and unload removes everything."""

from __future__ import annotations

import re
from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QDockWidget, QToolBar

import kdmsi_qgis
from kdmsi_qgis.paths import PLUGIN_DIR, core_root, metadata_path, resources_dir

ICONS = ("icon", "panel", "tag", "train", "suggest", "detect", "export")


def flush_deletes() -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QgsApplication.processEvents()


def test_init_gui_adds_and_unload_removes_everything(qgis_iface, qgis_new_project):
    window = qgis_iface.mainWindow()
    registry = QgsApplication.processingRegistry()
    qgis_iface.addPluginToRasterMenu.reset_mock()
    qgis_iface.removePluginRasterMenu.reset_mock()
    plugin = kdmsi_qgis.classFactory(qgis_iface)
    plugin.initGui()

    toolbar = plugin.toolbar
    assert toolbar.windowTitle() == "KD-MSI"
    texts = [a.text() for a in toolbar.actions()]
    assert texts == [
        "KD-MSI panel",
        "Tag tiles",
        "Train",
        "Suggest tiles",
        "Detect changes",
        "Export changes…",
    ]
    added = [call.args for call in qgis_iface.addPluginToRasterMenu.call_args_list]
    assert len(added) == 7 and all(menu == "&KD-MSI" for menu, _ in added)
    assert registry.providerById("kdmsi") is not None
    names = {a.name() for a in registry.providerById("kdmsi").algorithms()}
    assert names == {
        "createtilegrid", "trainfromtags", "suggesttiles", "detectchanges", "vectorizechangemap"
    }  # fmt: skip
    dock = plugin.dock
    assert isinstance(dock, QDockWidget)

    plugin.unload()
    flush_deletes()
    removed = [call.args for call in qgis_iface.removePluginRasterMenu.call_args_list]
    assert sorted(id(a) for _, a in removed) == sorted(id(a) for _, a in added)
    assert registry.providerById("kdmsi") is None
    assert sip.isdeleted(dock)
    assert sip.isdeleted(toolbar)
    assert not [t for t in window.findChildren(QToolBar) if t.windowTitle() == "KD-MSI"]
    assert not [a for a in window.findChildren(QAction) if a.objectName().startswith("kdmsi_")]
    assert not window.findChildren(QDockWidget, "KdmsiDock")


def test_panel_action_shows_the_dock(qgis_iface, qgis_new_project):
    plugin = kdmsi_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.panel_action.trigger()
        assert plugin.dock.isVisibleTo(qgis_iface.mainWindow()) or plugin.dock.isVisible()
        assert plugin.dock.ui.before_combo is not None
    finally:
        plugin.unload()
        flush_deletes()


def test_plugin_never_imports_torch_or_core():
    pattern = re.compile(r"^\s*(import|from)\s+(torch|core)\b", re.MULTILINE)
    for path in PLUGIN_DIR.glob("*.py"):
        assert not pattern.search(path.read_text()), path


def test_resources_and_metadata_resolve_in_the_source_tree():
    assert (resources_dir() / "tags.qml").exists()
    for name in ICONS:
        assert (resources_dir() / f"{name}.svg").exists()
    assert (core_root() / "core" / "__init__.py").exists()
    text = metadata_path().read_text()
    for key in (
        "name",
        "qgisMinimumVersion",
        "description",
        "about",
        "version",
        "author",
        "email",
        "repository",
        "tracker",
        "homepage",
        "icon",
        "category",
        "tags",
        "hasProcessingProvider",
    ):
        assert re.search(rf"^{key}=\S", text, re.MULTILINE), key
    icon = re.search(r"^icon=(.+)$", text, re.MULTILINE).group(1)
    assert (Path(resources_dir().parent) / icon).exists()
