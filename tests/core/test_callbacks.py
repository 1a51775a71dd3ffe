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
