"""Tests of core.data.otsu: Otsu's threshold on histograms."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.otsu import otsu


def test_bimodal_histogram_splits_between_the_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.05, 20_000), rng.normal(0.75, 0.05, 5_000)])
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    threshold = otsu(hist, edges)
    assert 0.35 < threshold < 0.6
    assert threshold in edges


def test_two_spikes_split_between_them():
    hist = np.zeros(100)
    hist[10], hist[60] = 500, 20
    edges = np.linspace(0.0, 100.0, 101)
    threshold = otsu(hist, edges)
    assert 11.0 <= threshold <= 60.0  # every pixel of the first spike below, of the second above


def test_threshold_moves_with_the_modes():
    edges = np.linspace(0.0, 1.0, 201)
    low = otsu(np.histogram([0.1] * 50 + [0.3] * 50, bins=edges)[0], edges)
    high = otsu(np.histogram([0.6] * 50 + [0.9] * 50, bins=edges)[0], edges)
    assert 0.1 < low <= 0.3
    assert 0.6 < high <= 0.9


@pytest.mark.parametrize(
    "hist",
    [np.zeros(10), np.array([0, 0, 0, 7, 0, 0, 0, 0, 0, 0])],  # empty; a single value
    ids=["empty", "single-bin"],
)
def test_degenerate_histograms_fall_back_to_the_middle(hist):
    edges = np.linspace(2.0, 4.0, 11)
    assert otsu(hist, edges) == pytest.approx(3.0)


def test_flat_histogram_splits_in_the_middle():
    edges = np.linspace(0.0, 1.0, 101)
    assert otsu(np.ones(100), edges) == pytest.approx(0.5)
