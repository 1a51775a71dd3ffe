"""Tests of the callbacks core functions report through."""

from __future__ import annotations

import pytest

from core.callbacks import Callbacks
from core.errors import Canceled


def test_without_progress_keeps_log_and_cancel_but_drops_progress():
    seen: list[tuple[str, object]] = []
    callbacks = Callbacks(
        progress=lambda fraction, message: seen.append(("progress", fraction)),
        log=lambda level, message: seen.append((level, message)),
        is_canceled=lambda: True,
    )
    quiet = callbacks.without_progress()
    quiet.progress(0.5, "half")
    quiet.info("still logged")
    assert seen == [("info", "still logged")]
    with pytest.raises(Canceled):
        quiet.check_canceled()
    callbacks.progress(1.0, "done")
    assert seen[-1] == ("progress", 1.0)


def test_within_maps_a_steps_progress_into_its_share_of_the_whole():
    seen: list[float] = []
    callbacks = Callbacks(progress=lambda fraction, message: seen.append(fraction))
    first, second = callbacks.within(0.0, 0.25), callbacks.within(0.25, 1.0)
    for step in (first, second):
        step.progress(0.0, "start")
        step.progress(1.0, "end")
    assert seen == pytest.approx([0.0, 0.25, 0.25, 1.0])
