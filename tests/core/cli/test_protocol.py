"""The worker protocol (core/cli/protocol.json) against what the command line really writes.

Every quick command runs in-process under ``--jsonl`` on small synthetic rasters; each run's
events, result keys and exit status are checked with :func:`core.cli.protocol.run_problems`.
The learned commands (train, detect, suggest, export, demo) are checked the same way by
tests/core/cli/test_learned_commands.py on real imagery. docs/worker-protocol.md must name every
event, field, result key and exit status of the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.cli.main import EXIT_CANCELED, EXIT_UNEXPECTED, EXIT_USER_ERROR, main
from core.cli.protocol import EXIT_STATUSES, PROTOCOL, event_problems, run_problems

DOC = Path(__file__).resolve().parents[3] / "docs" / "worker-protocol.md"


def run_jsonl(capsys, *args: object) -> tuple[list[dict], int]:
    """Run ``kdmsi ARGS --jsonl`` in this process; its events and exit status."""
    status = main([*(str(a) for a in args), "--jsonl"])
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()], status


@pytest.fixture
def pair(tmp_path, write_raster, scene):
    before = scene(96, 96, seed=1)
    after = before.copy()
    after[:, 30:60, 30:60] = 255 - after[:, 30:60, 30:60]
    label = np.zeros((96, 96), np.uint8)
    label[30:60, 30:60] = 1
    return (
        write_raster(tmp_path / "a.tif", before),
        write_raster(tmp_path / "b.tif", after),
        write_raster(tmp_path / "label.tif", label),
    )


def test_quick_commands_follow_the_protocol(tmp_path, capsys, pair):
    before, after, label = pair
    ab = ("--before", before, "--after", after)
    prob, polygons = tmp_path / "prob.tif", tmp_path / "changes.gpkg"
    runs = {
        "grid": ("grid", *ab, "--tile", 32, "--labels", label, "--out", tmp_path / "tags.gpkg"),
        "detect": ("detect", *ab, "--method", "cva", "--out", prob),
        "vectorize": ("vectorize", "--prob", prob, "--out", polygons),
        "evaluate": ("evaluate", "--pred", prob, "--label", label),
    }
    for command, args in runs.items():
        events, status = run_jsonl(capsys, *args)
        assert status == 0, events
        assert run_problems(events, command, status) == [], command
        assert events[-1]["event"] == "result"


def test_a_user_error_is_one_error_event_and_status_2(tmp_path, capsys):
    events, status = run_jsonl(capsys, "vectorize", "--prob", tmp_path / "no.tif", "--out", "x.shp")
    assert status == EXIT_USER_ERROR == EXIT_STATUSES["user_error"] == 2
    assert run_problems(events, "vectorize", status) == []
    assert str(tmp_path / "no.tif") in events[-1]["message"]


def test_the_exit_statuses_of_the_command_line_are_the_documented_ones():
    assert EXIT_CANCELED == EXIT_STATUSES["canceled"]
    assert EXIT_UNEXPECTED == EXIT_STATUSES["unexpected_error"]
    assert sorted(EXIT_STATUSES.values()) == [0, 1, 2, 130]


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"event": "progres", "fraction": 0.5}, "unknown event"),
        ({"event": "progress", "fraction": "half", "stage": "s", "message": ""}, "not a number"),
        ({"event": "log", "level": "info"}, "fields"),
        ({"event": "log", "level": "shout", "message": "x"}, "level"),
        (
            {"event": "result", "outputs": {"tags": "t"}, "metrics": {}, "summary": ""},
            "lacks metrics",
        ),
        (
            {"event": "result", "outputs": {"tags": "t", "x": 1}, "metrics": {}, "summary": ""},
            "undocumented",
        ),
        ({"event": "result", "outputs": {"tags": "t"}, "metrics": {}}, "fields"),
    ],
)
def test_the_checker_reports_departures(event, problem):
    assert any(problem in p for p in event_problems(event, "grid"))


def test_the_checker_reports_a_run_that_ends_badly():
    ok = {"event": "result", "outputs": {"onnx": "s.onnx"}, "metrics": {}, "summary": "s.onnx"}
    assert run_problems([ok], "export", 0) == []
    assert run_problems([], "export", 0) != []
    assert run_problems([ok], "export", 3) != []
    assert run_problems([ok, {"event": "error", "message": "x"}], "export", 2) != []


def test_the_document_names_everything_in_the_protocol_file():
    text = DOC.read_text(encoding="utf-8")
    names = set(PROTOCOL["events"]) | set(PROTOCOL["results"]) | set(PROTOCOL["log_levels"])
    for fields in PROTOCOL["events"].values():
        names |= set(fields)
    for spec in PROTOCOL["results"].values():
        for key in ("outputs", "optional_outputs", "metrics", "optional_metrics"):
            names |= set(spec.get(key, []))
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert missing == [], f"docs/worker-protocol.md does not name {missing}"
    for status in EXIT_STATUSES.values():
        assert f"`{status}`" in text
