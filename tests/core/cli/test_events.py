"""Tests of core.cli.events: the worker protocol (one JSON event per line) and human output."""

from __future__ import annotations

import io
import json

import pytest

from core.cli.events import Reporter
from core.errors import Canceled


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_jsonl_events_follow_the_protocol():
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(jsonl=True, out=out, err=err)
    callbacks = reporter.callbacks("train")
    callbacks.progress(1.0, "epoch 3/20")
    callbacks.info("hello")
    callbacks.metric("loss", 0.12, 300)
    reporter.result({"probability": "p.tif"}, {"f1": 0.5})
    reporter.error("The before raster x.tif does not exist; check the path.")
    assert lines(out) == [
        {"event": "progress", "fraction": 1.0, "stage": "train", "message": "epoch 3/20"},
        {"event": "log", "level": "info", "message": "hello"},
        {"event": "metric", "name": "loss", "value": 0.12, "step": 300},
        {
            "event": "result",
            "outputs": {"probability": "p.tif"},
            "metrics": {"f1": 0.5},
            "summary": "probability: p.tif",
        },
        {"event": "error", "message": "The before raster x.tif does not exist; check the path."},
    ]
    assert err.getvalue() == ""


def test_progress_is_throttled_but_the_end_always_gets_through():
    out = io.StringIO()
    reporter = Reporter(jsonl=True, out=out, err=io.StringIO())
    for i in range(1000):
        reporter.progress(i / 1000, "working")
    reporter.progress(1.0, "done")
    events = lines(out)
    assert len(events) < 10
    assert events[-1]["fraction"] == 1.0


def test_progress_fraction_is_clamped():
    out = io.StringIO()
    reporter = Reporter(jsonl=True, out=out, err=io.StringIO())
    reporter.progress(1.7, "over")
    assert lines(out)[-1]["fraction"] == 1.0


def test_human_mode_logs_to_stderr_and_results_to_stdout():
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(jsonl=False, out=out, err=err)
    callbacks = reporter.callbacks("grid")
    callbacks.info("an info line")
    callbacks.warning("careful")
    callbacks.log("debug", "hidden")
    callbacks.metric("loss", 1.0, 1)
    callbacks.progress(1.0, "done")  # not a terminal: no progress bar
    reporter.result({"tags": "t.gpkg"}, {"changed": 1})
    reporter.error("bad input.")
    assert err.getvalue() == "an info line\nwarning: careful\nerror: bad input.\n"
    assert out.getvalue() == "tags: t.gpkg\n"


def test_human_result_text_replaces_the_outputs_listing():
    out = io.StringIO()
    Reporter(out=out, err=io.StringIO()).result({"tags": "t.gpkg"}, text="12 tiles\n\n")
    assert out.getvalue() == "12 tiles\n"


def test_cancel_event_reaches_core_callbacks():
    reporter = Reporter(out=io.StringIO(), err=io.StringIO())
    callbacks = reporter.callbacks("detect")
    callbacks.check_canceled()
    reporter.cancel.set()
    with pytest.raises(Canceled):
        callbacks.check_canceled()
