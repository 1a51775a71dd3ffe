"""Tests of core.detect.tile_ranking: tile scores and the tiles a model is least sure about."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.detect.tile_ranking import most_changed, most_uncertain, tile_peaks, tile_scores


def test_tile_scores_average_only_valid_pixels():
    prob = np.array([[[0.2, 0.8], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]], dtype=np.float32)
    valid = np.array([[[True, True], [False, False]], [[False] * 2] * 2])
    scores = tile_scores(prob, valid)
    assert scores[0] == pytest.approx(0.5)
    assert math.isnan(scores[1])


def test_most_uncertain_are_closest_to_the_threshold_and_skip_unscored_tiles():
    scores = np.array([0.9, 0.31, np.nan, 0.29, 0.05, 0.3])
    assert most_uncertain(scores, 0.3, 3).tolist() == [5, 1, 3]
    assert most_uncertain(scores, 0.3, 10).tolist() == [5, 1, 3, 4, 0]
    assert most_uncertain(scores, 0.3, 0).tolist() == []


def test_most_changed_are_the_highest_scores_and_skip_unscored_tiles():
    scores = np.array([0.9, 0.31, np.nan, 0.29, 0.05, 0.31])
    assert most_changed(scores, 3).tolist() == [0, 1, 5]
    assert most_changed(scores, 10).tolist() == [0, 1, 5, 3, 4]
    assert most_changed(scores, 0).tolist() == []


def test_tile_peaks_take_the_highest_valid_pixel():
    prob = np.array([[[0.1, 0.9], [0.2, 0.3]], [[0.4, 0.5], [0.6, 0.7]], [[0.8, 0.8], [0.8, 0.8]]])
    valid = np.array([[[True, False], [True, True]], [[True] * 2] * 2, [[False] * 2] * 2])
    peaks = tile_peaks(prob, valid)
    assert peaks[:2].tolist() == [0.3, 0.7]  # the 0.9 of tile 0 lies outside its valid pixels
    assert np.isnan(peaks[2])
