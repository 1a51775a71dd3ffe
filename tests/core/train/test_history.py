"""The training log's curves: drawn at most every few seconds, always at the end."""

from __future__ import annotations

from core.train.history import CurvePlot

ROW = {"teacher_bce": 0.5, "distill": 1.0, "val_auc_student": 0.6, "val_auc_teacher": 0.7}


def rows(count: int) -> list[dict]:
    return [{"epoch": epoch, **ROW} for epoch in range(1, count + 1)]


def test_curves_are_drawn_at_first_then_at_most_every_period_and_always_at_the_end(tmp_path):
    path = tmp_path / "curves.png"
    plot = CurvePlot(path, seconds=3600.0)
    assert plot.update(rows(1))
    first = path.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot.update(rows(2))  # within the period: the file is left as it was
    assert path.read_bytes() == first
    assert plot.update(rows(3), final=True)
    assert path.read_bytes() != first


def test_a_zero_period_draws_every_epoch(tmp_path):
    plot = CurvePlot(tmp_path / "curves.png", seconds=0.0)
    assert all(plot.update(rows(epoch)) for epoch in (1, 2, 3))
