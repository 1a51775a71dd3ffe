"""The worker protocol as the worker declares it (``core/cli/protocol.json``), read as data.

The plugin never imports ``core``; it reads the same JSON file the command line follows, so the
event kinds, the result keys and the exit statuses cannot drift apart (docs/worker-protocol.md).
"""

from __future__ import annotations

import json
from typing import Any

from kdmsi_qgis.paths import core_root


def load_protocol() -> dict[str, Any]:
    """The parsed ``protocol.json`` of the bundled (or source-tree) ``core``."""
    path = core_root() / "core" / "cli" / "protocol.json"
    return json.loads(path.read_text(encoding="utf-8"))


PROTOCOL = load_protocol()
EVENT_KINDS: tuple[str, ...] = tuple(PROTOCOL["events"])
EXIT_STATUSES: dict[str, int] = PROTOCOL["exit_statuses"]


def outputs_of(command: str) -> set[str]:
    """Every ``result`` output ``command`` may write (always present and optional)."""
    spec = PROTOCOL["results"][command]
    return set(spec["outputs"]) | set(spec["optional_outputs"])
