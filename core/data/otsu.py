"""Label-free thresholds: Otsu's method on a histogram."""

from __future__ import annotations

import numpy as np


def otsu(hist: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram: the cut that maximises the between-class variance.

    Args:
        hist: counts per bin.
        edges: bin edges (``len(hist) + 1`` values).

    Returns:
        The threshold (a bin edge); the middle of the range when the histogram is flat or empty.
    """
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    if total <= 0:
        return float((edges[0] + edges[-1]) / 2)
    centers = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist)
    weight1 = total - weight0
    sum0 = np.cumsum(hist * centers)
    mean0 = np.divide(sum0, weight0, out=np.zeros_like(sum0), where=weight0 > 0)
    mean1 = np.divide(sum0[-1] - sum0, weight1, out=np.zeros_like(sum0), where=weight1 > 0)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    if not np.any(between > 0):
        return float((edges[0] + edges[-1]) / 2)
    return float(edges[int(np.argmax(between)) + 1])
