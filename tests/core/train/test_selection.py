"""Tests of the label-free model selection helpers: stratified tag split and image-level AUC."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from core.train.selection import roc_auc, stratified_split


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(equal), over all pairs."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


# --- stratified_split ---------------------------------------------------------------------


def test_split_keeps_class_balance():
    labels = np.array([0] * 30 + [1] * 10)
    train, held = stratified_split(labels, 0.2, seed=0)
    assert (labels[held] == 0).sum() == 6
    assert (labels[held] == 1).sum() == 2
    assert (labels[train] == 0).sum() == 24
    assert (labels[train] == 1).sum() == 8


def test_split_is_a_partition_sorted():
    labels = np.random.default_rng(3).integers(0, 2, size=57)
    train, held = stratified_split(labels, 0.3, seed=5)
    assert train.dtype == np.int64 and held.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(held) > 0)
    assert not set(train) & set(held)
    assert sorted([*train, *held]) == list(range(len(labels)))


@pytest.mark.parametrize("fraction", [0.5, 0.9, 1.0])
def test_split_never_holds_out_a_class_last_tile(fraction):
    labels = np.array([0] * 5 + [1] * 2)
    train, held = stratified_split(labels, fraction, seed=1)
    assert set(labels[train]) == {0, 1}
    assert (labels[train] == 1).sum() >= 1
    assert (labels[train] == 0).sum() >= 1
    if fraction == 1.0:
        assert len(held) == 5  # every tile but the last of each class
        assert (labels[held] == 0).sum() == 4 and (labels[held] == 1).sum() == 1


def test_split_single_tile_class_stays_in_training():
    labels = np.array([0, 0, 0, 0, 1])
    train, held = stratified_split(labels, 0.5, seed=0)
    assert 4 in train
    assert 4 not in held


def test_split_one_class_only_and_empty():
    train, held = stratified_split(np.zeros(10, dtype=int), 0.2, seed=0)
    assert len(held) == 2 and len(train) == 8
    train, held = stratified_split(np.array([], dtype=int), 0.2, seed=0)
    assert len(train) == 0 and len(held) == 0


def test_split_zero_fraction_holds_nothing_out():
    labels = np.array([0, 1] * 10)
    train, held = stratified_split(labels, 0.0, seed=0)
    assert len(held) == 0
    assert list(train) == list(range(20))


def test_split_is_deterministic_per_seed():
    labels = np.random.default_rng(0).integers(0, 2, size=200)
    first = stratified_split(labels, 0.25, seed=42)
    again = stratified_split(labels, 0.25, seed=42)
    other = stratified_split(labels, 0.25, seed=43)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    assert len(first[1]) == len(other[1])


# --- roc_auc ------------------------------------------------------------------------------


def test_auc_hand_computed():
    # Positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 1 + 0 + 1 + 1 = 3 of 4.
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_auc_perfect_and_inverted():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    assert roc_auc(scores, labels) == pytest.approx(1.0)
    assert roc_auc(-scores, labels) == pytest.approx(0.0)


def test_auc_ties_count_half():
    # Positives 2, 3; negatives 1, 2: 1 + 0.5 + 1 + 1 = 3.5 of 4.
    assert roc_auc(np.array([1.0, 2.0, 2.0, 3.0]), np.array([0, 0, 1, 1])) == pytest.approx(0.875)
    # All equal: every pair is a tie.
    assert roc_auc(np.full(6, 0.3), np.array([0, 1, 0, 1, 1, 0])) == pytest.approx(0.5)


def test_auc_accepts_bool_labels_and_lists():
    assert roc_auc([0.9, 0.1, 0.5], [True, False, False]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_brute_force_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=40).astype(float)
    labels = rng.integers(0, 2, size=40)
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1], []])
def test_auc_is_nan_for_one_class(labels):
    assert math.isnan(roc_auc(np.arange(len(labels), dtype=float), np.array(labels)))
