"""Label-free model selection: a seeded stratified split of the tags and an image-level AUC.

Only tile tags are used here, never pixel labels.
"""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, held-out) keeping the class balance.

    Each class gives ``round(fraction * n_class)`` tiles to the held-out part, but never its last
    tile, so training always sees both classes when the tags have them.

    Args:
        labels: 0/1 tag of each tile.
        fraction: share of each class held out.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, held = [], []
    for value in (0, 1):
        index = np.flatnonzero(labels == value)
        rng.shuffle(index)
        count = min(round(fraction * len(index)), max(len(index) - 1, 0))
        held.extend(index[:count].tolist())
        train.extend(index[count:].tolist())
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(held, dtype=np.int64))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Returns:
        The AUC, or NaN when only one class is present.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))
