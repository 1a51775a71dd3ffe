"""Tests of core.eval.metrics: confusion matrix scores and the threshold sweep."""

from __future__ import annotations

import numpy as np
import pytest

from core.eval.metrics import ConfusionMatrix, ThresholdSweep, best_threshold_f1

# Pixel by pixel (pred, label):
# row 0: (1,1) tp, (1,0) fp, (0,1) fn, (0,0) tn
# row 1: (1,1) tp, (0,0) tn, (1,0) fp, (0,0) tn
PRED = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
LABEL = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], dtype=bool)


def test_hand_computed_matrix_and_scores():
    m = ConfusionMatrix().update(PRED, LABEL)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 2, 1, 3)
    assert m.precision == pytest.approx(2 / 4)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(4 / 7)  # 2*2 / (2*2 + 2 + 1)
    assert m.iou == pytest.approx(2 / 5)
    assert m.oa == pytest.approx(5 / 8)
    # pe = (4*3 + 4*5) / 64 = 0.5; kappa = (0.625 - 0.5) / (1 - 0.5)
    assert m.kappa == pytest.approx(0.25)
    # unchanged F1 = 2*3 / (2*3 + 2 + 1) = 2/3; mean = (4/7 + 2/3) / 2 = 13/21
    assert m.mean_f1_two_class == pytest.approx(13 / 21)
    assert m.mean_f1 == m.mean_f1_two_class


def test_as_dict_keys_and_types():
    d = ConfusionMatrix().update(PRED, LABEL).as_dict()
    assert list(d) == [
        "precision", "recall", "f1", "iou", "oa", "kappa", "mean_f1_two_class",
        "tp", "fp", "fn", "tn",
    ]  # fmt: skip
    assert all(type(d[k]) is int for k in ("tp", "fp", "fn", "tn"))
    assert all(type(d[k]) is float for k in ("precision", "f1", "kappa"))


def test_ignore_mask():
    valid = np.ones_like(PRED)
    valid[0, 2] = False  # the fn pixel
    valid[1, 3] = False  # a tn pixel
    m = ConfusionMatrix().update(PRED, LABEL, valid)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 2, 0, 2)
    assert m.recall == 1.0


def test_integer_arrays_accepted_floats_refused():
    m = ConfusionMatrix().update(PRED.astype(np.uint8) * 255, LABEL.astype(np.int32))
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 2, 1, 3)
    with pytest.raises(TypeError):
        ConfusionMatrix().update(PRED.astype(float), LABEL)
    with pytest.raises(ValueError):
        ConfusionMatrix().update(PRED[:, :2], LABEL)


def test_accumulation_equals_concatenation():
    rng = np.random.default_rng(0)
    shapes = [(7, 9), (5, 11)]
    preds = [rng.random(s) > 0.6 for s in shapes]
    labels = [rng.random(s) > 0.7 for s in shapes]
    valids = [rng.random(s) > 0.2 for s in shapes]
    accumulated = ConfusionMatrix()
    for p, lab, v in zip(preds, labels, valids):
        accumulated.update(p, lab, v)
    flat = ConfusionMatrix().update(
        np.concatenate([p.ravel() for p in preds]),
        np.concatenate([x.ravel() for x in labels]),
        np.concatenate([v.ravel() for v in valids]),
    )
    assert accumulated == flat
    summed = ConfusionMatrix().update(preds[0], labels[0], valids[0]) + ConfusionMatrix().update(
        preds[1], labels[1], valids[1]
    )
    assert summed == flat


def test_perfect_agreement():
    m = ConfusionMatrix().update(LABEL, LABEL)
    assert m.kappa == 1.0
    assert m.f1 == m.precision == m.recall == m.iou == m.oa == 1.0
    assert m.mean_f1_two_class == 1.0


def test_degenerate_cases_are_zero():
    empty = ConfusionMatrix()
    assert empty.as_dict() == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0, "oa": 0.0, "kappa": 0.0,
        "mean_f1_two_class": 0.0, "tp": 0, "fp": 0, "fn": 0, "tn": 0,
    }  # fmt: skip
    # No change anywhere, none predicted: changed-class scores are 0/0 -> 0, OA is 1.
    none = ConfusionMatrix().update(np.zeros(5, bool), np.zeros(5, bool))
    assert (none.precision, none.recall, none.f1, none.iou) == (0.0, 0.0, 0.0, 0.0)
    assert none.oa == 1.0
    assert none.kappa == 0.0  # pe == 1
    assert none.mean_f1_two_class == 0.5
    # Everything predicted changed where nothing changed.
    wrong = ConfusionMatrix().update(np.ones(4, bool), np.zeros(4, bool))
    assert (wrong.fp, wrong.precision, wrong.recall, wrong.oa) == (4, 0.0, 0.0, 0.0)
    # Everything masked out.
    masked = ConfusionMatrix().update(PRED, LABEL, np.zeros_like(PRED))
    assert masked == ConfusionMatrix()


def test_kappa_worse_than_chance_is_negative():
    m = ConfusionMatrix().update(~LABEL, LABEL)
    assert m.kappa < 0


def test_sweep_agrees_with_direct_computation():
    rng = np.random.default_rng(1)
    probs = [rng.random((13, 17)).astype(np.float32) for _ in range(3)]
    labels = [rng.random((13, 17)) > 0.5 for _ in range(3)]
    valids = [rng.random((13, 17)) > 0.1 for _ in range(3)]
    probs[0][0, 0] = 0.3  # exactly on a threshold: counts as changed at 0.3
    probs[1][0, 0] = np.nan  # not scored
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    sweep = ThresholdSweep(thresholds)
    for p, lab, v in zip(probs, labels, valids):
        sweep.update(p, lab, v)
    for t, matrix in zip(thresholds, sweep.matrices()):
        direct = ConfusionMatrix()
        for p, lab, v in zip(probs, labels, valids):
            direct.update(p >= np.float32(t), lab, v & np.isfinite(p))
        assert matrix == direct, t
    best_t, best_m = sweep.best()
    assert best_m.f1 == max(m.f1 for m in sweep.matrices())
    assert best_t in thresholds


def test_best_threshold_f1_single_image():
    prob = np.array([0.1, 0.2, 0.35, 0.8, 0.9, 0.6])
    label = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    t, m = best_threshold_f1(prob, label, thresholds=[0.3, 0.5, 0.7])
    assert t == 0.3
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 1, 0, 2)
    t_default, _ = best_threshold_f1(prob, label)
    assert 0.2 < t_default <= 0.35


def test_sweep_rejects_empty_thresholds():
    with pytest.raises(ValueError):
        ThresholdSweep([])
