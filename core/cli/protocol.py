"""The worker protocol of ``kdmsi ... --jsonl`` as data (``protocol.json``) and its checker.

``protocol.json`` lists every event with its fields, the result keys of each command and the
exit statuses; ``docs/worker-protocol.md`` explains it for people. The QGIS plugin reads the same
file, so the two sides cannot drift apart silently: tests on both sides compare their code with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROTOCOL_FILE = Path(__file__).with_name("protocol.json")
PROTOCOL: dict[str, Any] = json.loads(PROTOCOL_FILE.read_text(encoding="utf-8"))
EXIT_STATUSES: dict[str, int] = PROTOCOL["exit_statuses"]
_TYPES = {
    "number": (int, float),
    "integer": (int,),
    "string": (str,),
    "object": (dict,),
}


def event_problems(event: dict[str, Any], command: str | None = None) -> list[str]:
    """What in one event departs from the protocol (an empty list when nothing does).

    Args:
        event: one decoded JSON line.
        command: the subcommand that wrote it, to check a ``result`` event's keys.
    """
    kind = event.get("event")
    fields = PROTOCOL["events"].get(kind)
    if fields is None:
        return [f"unknown event {kind!r}"]
    problems = []
    if set(event) - {"event"} != set(fields):
        problems.append(f"{kind} event has fields {sorted(event)}, not event + {sorted(fields)}")
    for name, type_name in fields.items():
        if name in event and not isinstance(event[name], _TYPES[type_name]):
            problems.append(f"{kind}.{name} is not a {type_name}: {event[name]!r}")
    if kind == "log" and event.get("level") not in PROTOCOL["log_levels"]:
        problems.append(f"log level {event.get('level')!r} is not one of the documented levels")
    if kind == "result" and command is not None and not problems:
        problems += result_problems(event, command)
    return problems


def result_problems(event: dict[str, Any], command: str) -> list[str]:
    """What in a ``result`` event of ``command`` departs from its documented keys."""
    spec = PROTOCOL["results"].get(command)
    if spec is None:
        return [f"no result is documented for {command!r}"]
    problems = []
    outputs, metrics = set(event["outputs"]), set(event["metrics"])
    if missing := set(spec["outputs"]) - outputs:
        problems.append(f"{command} result lacks outputs {sorted(missing)}")
    if extra := outputs - set(spec["outputs"]) - set(spec["optional_outputs"]):
        problems.append(f"{command} result has undocumented outputs {sorted(extra)}")
    optional = set(spec.get("optional_metrics", []))
    if missing := set(spec["metrics"]) - metrics:
        problems.append(f"{command} result lacks metrics {sorted(missing)}")
    if extra := metrics - set(spec["metrics"]) - optional:
        problems.append(f"{command} result has undocumented metrics {sorted(extra)}")
    return problems


def run_problems(events: list[dict[str, Any]], command: str, status: int) -> list[str]:
    """What in a whole run departs from the protocol: each event, and how the run ended.

    A run that exits 0 ends with exactly one ``result``; a run with a documented failure status
    writes exactly one ``error`` and no ``result``.
    """
    problems = [p for event in events for p in event_problems(event, command)]
    kinds = [event.get("event") for event in events]
    if status not in EXIT_STATUSES.values():
        problems.append(f"exit status {status} is not documented")
    elif status == EXIT_STATUSES["ok"]:
        if kinds.count("result") != 1 or kinds.count("error"):
            problems.append(f"a successful run needs one result and no error, got {kinds}")
    elif kinds.count("error") != 1 or kinds.count("result"):
        problems.append(f"a failed run (status {status}) needs one error and no result: {kinds}")
    return problems
