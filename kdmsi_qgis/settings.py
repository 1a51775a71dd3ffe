"""User settings (QgsSettings) and per-project state (QgsProject entries)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

from qgis.core import QgsProject, QgsSettings

from kdmsi_qgis.paths import core_defaults

SETTINGS_GROUP = "kdmsi"
PROJECT_SCOPE = "kdmsi"
# The worker's own defaults and option sets (core/defaults.json), never hand copies.
CORE = core_defaults()
DEFAULTS: dict = CORE["defaults"]
BACKBONES: tuple[str, ...] = tuple(CORE["choices"]["backbone"])
DEVICES: tuple[str, ...] = tuple(CORE["choices"]["device"])
METHODS: tuple[str, ...] = tuple(CORE["choices"]["method"])
EDGES_TIP = (
    "Refine the change map along the colour edges of both images. In the benchmark it raised "
    "F1 by about 0.02 on aerial photographs and lowered it on 10 m Sentinel-2 cities and on "
    "radar images, so it is off by default."
)


def edge_rounds(follow_edges: bool) -> int:
    """The worker's ``--affinity-rounds`` for the "Follow colour edges" choice."""
    return DEFAULTS["affinity_rounds_aerial"] if follow_edges else DEFAULTS["affinity_rounds"]


@dataclass
class Options:
    """The panel's parameters, remembered between sessions in QgsSettings."""

    bands: str = ""
    tile: int = DEFAULTS["tile"]
    backbone: str = DEFAULTS["backbone"]
    epochs: int = DEFAULTS["epochs"]
    device: str = DEFAULTS["device"]
    out_dir: str = ""
    threshold: float = 0.5
    min_pixels: int = DEFAULTS["min_pixels"]
    follow_edges: bool = False

    @classmethod
    def load(cls) -> Options:
        """Read from QgsSettings (defaults for missing keys)."""
        settings = QgsSettings()
        values = {}
        for f in fields(cls):
            default = f.default
            values[f.name] = settings.value(
                f"{SETTINGS_GROUP}/{f.name}", default, type=type(default)
            )
        return cls(**values)

    def save(self) -> None:
        """Write to QgsSettings."""
        settings = QgsSettings()
        for name, value in asdict(self).items():
            settings.setValue(f"{SETTINGS_GROUP}/{name}", value)


@dataclass
class ProjectState:
    """What the panel works on in this project: layer ids, files and the pair's parameters.

    Every value is a string, empty when the project holds none; ``bands``, ``tile``,
    ``out_dir`` and ``threshold`` override the user's settings (:class:`Options`) in this project;
    ``resumable`` is the run folder of a canceled training that kept its checkpoint.
    """

    before: str = ""
    after: str = ""
    tags: str = ""
    model: str = ""
    probability: str = ""
    polygons: str = ""
    suggestions: str = ""
    bands: str = ""
    tile: str = ""
    out_dir: str = ""
    threshold: str = ""
    resumable: str = ""

    @classmethod
    def load(cls, project: Optional[QgsProject] = None) -> ProjectState:
        """Read the entries stored in the project (empty strings when absent)."""
        project = project or QgsProject.instance()
        values = {f.name: project.readEntry(PROJECT_SCOPE, f.name, "")[0] for f in fields(cls)}
        return cls(**values)

    def save(self, project: Optional[QgsProject] = None) -> None:
        """Write the entries into the project (saved with the .qgz)."""
        project = project or QgsProject.instance()
        for name, value in asdict(self).items():
            project.writeEntry(PROJECT_SCOPE, name, value or "")
