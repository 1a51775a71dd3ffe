"""The plugin's side of the worker protocol, checked against core/cli/protocol.json.

The core's side is tests/core/cli/test_protocol.py; both read the same file, so a change on one
side that the other does not follow fails here or there.
"""

from __future__ import annotations

import json
from dataclasses import fields

SAMPLES = {"number": 0.5, "integer": 3, "string": "text", "object": {}}


def sample_event(kind: str, spec: dict) -> dict:
    return {"event": kind, **{name: SAMPLES[type_name] for name, type_name in spec.items()}}


def test_the_plugin_reads_the_protocol_file_of_the_core_it_runs(qgis_app):
    from kdmsi_qgis.paths import core_root
    from kdmsi_qgis.protocol import EVENT_KINDS, PROTOCOL

    path = core_root() / "core" / "cli" / "protocol.json"
    assert PROTOCOL == json.loads(path.read_text())
    assert set(EVENT_KINDS) == {"progress", "metric", "log", "result", "error"}


def test_every_documented_event_is_handled(qgis_app):
    from kdmsi_qgis.log_lines import log_line
    from kdmsi_qgis.protocol import PROTOCOL
    from kdmsi_qgis.worker import WorkerOutcome, parse_line

    outcome = WorkerOutcome()
    for kind, spec in PROTOCOL["events"].items():
        event = sample_event(kind, spec)
        if kind == "result":
            event["outputs"], event["metrics"] = {"model": "m.pt"}, {"val_auc": 0.9}
        if kind == "log":
            event["level"] = "info"
        assert parse_line(json.dumps(event)) == event
        outcome.absorb(event)
        line = log_line(event)
        assert line is None or isinstance(line, str)
    assert outcome.outputs == {"model": "m.pt"} and outcome.metrics == {"val_auc": 0.9}
    assert outcome.error == "text"
    assert any("text" in line for line in outcome.logs)


def task_classes() -> list[type]:
    from kdmsi_qgis import tasks

    return [
        c for c in vars(tasks).values()
        if isinstance(c, type) and issubclass(c, tasks.WorkerTask) and c is not tasks.WorkerTask
    ]  # fmt: skip


def test_every_task_reads_only_documented_outputs_of_its_commands(qgis_app):
    from kdmsi_qgis.protocol import PROTOCOL, outputs_of
    from kdmsi_qgis.settings import ProjectState

    classes = task_classes()
    assert len(classes) >= 5
    state_fields = {f.name for f in fields(ProjectState)}
    for cls in classes:
        assert cls.COMMANDS, f"{cls.__name__} names no command"
        assert set(cls.COMMANDS) <= set(PROTOCOL["results"]), cls.__name__
        documented = set().union(*(outputs_of(c) for c in cls.COMMANDS))
        assert set(cls.READS) <= documented, cls.__name__
        assert set(cls.REMEMBERS) <= set(cls.READS) & state_fields, cls.__name__


def test_the_canceled_status_is_the_documented_one(qgis_app):
    from kdmsi_qgis.protocol import EXIT_STATUSES

    assert EXIT_STATUSES["canceled"] == 130 and EXIT_STATUSES["user_error"] == 2


def test_the_log_shows_a_result_in_words_not_as_a_dict(qgis_app):
    from kdmsi_qgis.log_lines import log_line

    sentence = "Model written to run/model.pt: epoch 3 of 5, the one that ranked the tags best."
    event = {"event": "result", "outputs": {"model": "run/model.pt"}, "metrics": {}}
    assert log_line({**event, "summary": sentence}) == sentence
    older = log_line({**event, "outputs": {"model": "m.pt", "log": "log.csv"}})  # no summary
    assert older == "model: m.pt\nlog: log.csv"
