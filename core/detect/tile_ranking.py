"""Scoring tiles with a change map: how changed a tile looks, and which tiles to tag next.

Two scores: a tile's *mean* change probability over its valid pixels ranks tiles from unchanged to
changed (training's epoch choice and the map choice measure their AUC with it); a tile's *peak*,
its highest probability, says whether the map puts any change pixel in it, which is what a tag
means (a tile is changed when any of its pixels is) and what the polygons show. ``kdmsi suggest``
proposes the untagged tiles with the highest peaks (where the map sees the most change) and the
tags a peak contradicts (cut at the pixel threshold), which are worth a second look. The transfer
suite's ``suggest-peaks`` strategy simulates a user who tags the former; its ``suggest`` strategy
the untagged tiles whose peak lies closest to the threshold (the ones the model is least sure
about), what ``kdmsi suggest`` proposed until session 22.
"""

from __future__ import annotations

import numpy as np


def tile_scores(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean probability over the valid pixels of each tile (NaN where none is valid).

    Args:
        probabilities: ``[N, T, T]`` change probabilities.
        valid: ``[N, T, T]`` booleans.
    """
    counts = valid.sum(axis=(1, 2))
    sums = np.where(valid, probabilities, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def tile_peaks(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Highest probability over the valid pixels of each tile (NaN where none is valid).

    Args:
        probabilities: ``[N, T, T]`` change probabilities.
        valid: ``[N, T, T]`` booleans.
    """
    peaks = np.where(valid, probabilities, -np.inf).max(axis=(1, 2))
    return np.where(np.isfinite(peaks), peaks, np.nan)


def most_uncertain(scores: np.ndarray, threshold: float, count: int) -> np.ndarray:
    """Indices of the ``count`` scored tiles closest to ``threshold``, closest first.

    Tiles without a score (NaN) are never chosen; ties keep the tiles' order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(np.abs(scores[finite] - threshold), kind="stable")]
    return order[: max(count, 0)]


def most_changed(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` scored tiles with the highest scores, highest first.

    Tiles without a score (NaN) are never chosen; ties keep the tiles' order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(-scores[finite], kind="stable")]
    return order[: max(count, 0)]
