"""Ranking tiles by a model's score: which tiles a new tag would teach the model most.

A tile's score is the mean change probability over its valid pixels; the tiles whose score lies
closest to the model's threshold are the ones it is least sure about. ``kdmsi suggest`` shows them
to the user, and the transfer suite's ``suggest`` strategy simulates a user who tags them.
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


def most_uncertain(scores: np.ndarray, threshold: float, count: int) -> np.ndarray:
    """Indices of the ``count`` scored tiles closest to ``threshold``, closest first.

    Tiles without a score (NaN) are never chosen; ties keep the tiles' order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(np.abs(scores[finite] - threshold), kind="stable")]
    return order[: max(count, 0)]
