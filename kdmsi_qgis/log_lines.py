"""What the panel's log and messages show of the worker: its events and its map names in words."""

from __future__ import annotations

from typing import Optional

METHOD_NAMES = {
    "kdmsi": "the trained network alone",
    "cam": "the teacher network's activation map",
    "cva": "change vector analysis (the plain colour difference)",
}
# What Detect draws when it keeps the default map: the combined map, or the refinement network's
# map for a model trained with it (the train result's "method").
DRAWN_NAMES = {
    "kdmsi-cva": "the combined map",
    "kdmsi-refined": "the refinement network's map",
}


def log_line(event: dict) -> Optional[str]:
    """The panel's log line for a worker event (None: nothing to show, e.g. progress)."""
    kind = event.get("event")
    if kind == "log" and event.get("level") != "debug":
        return str(event.get("message", ""))
    if kind == "metric" and event.get("name") == "loss":
        return f"step {event.get('step')}: loss {float(event.get('value', 0.0)):.4f}"
    if kind == "error":
        return f"error: {event.get('message', '')}"
    if kind == "result":
        outputs = event.get("outputs", {})
        return event.get("summary") or "\n".join(f"{k}: {v}" for k, v in outputs.items())
    return None
