"""Pixel metrics of a binary change map: one confusion matrix accumulated over many images.

The changed class is the positive class. All scores follow from a single :class:`ConfusionMatrix`
summed over every scored pixel of every test image (never averaged per image). A ratio whose
numerator and denominator are both zero is defined as 0.0 (for example the precision of a map that
predicts no change at all, or Cohen's kappa when both maps hold a single class).

:class:`ThresholdSweep` scores a probability map at many thresholds at once. It uses the ground
truth to choose the threshold, so it serves only to report "F1 at the best threshold (uses ground
truth)" in benchmarks, never to pick a threshold for a user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def _ratio(numerator: float, denominator: float) -> float:
    """Return ``numerator / denominator``, with 0/0 (and any x/0) defined as 0.0."""
    return float(numerator) / float(denominator) if denominator else 0.0


def _as_bool(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as a boolean array; integers mean ``!= 0``, floats are refused.

    Raises:
        TypeError: when ``array`` holds floating point or other non-integer values.
    """
    array = np.asarray(array)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "iu":
        return array != 0
    raise TypeError(f"{name} must be a boolean or integer array, not {array.dtype}")


def _scored(
    label: np.ndarray, valid: np.ndarray | None, others: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and return ``(label, valid)`` as booleans; ``valid`` defaults to all True.

    Raises:
        ValueError: when ``others`` or ``valid`` do not have the shape of ``label``.
    """
    label = _as_bool(label, "label")
    for other in others:
        if np.shape(other) != label.shape:
            raise ValueError(f"shape {np.shape(other)} differs from the label's {label.shape}")
    if valid is None:
        return label, np.ones(label.shape, dtype=bool)
    if np.shape(valid) != label.shape:
        raise ValueError(f"valid mask shape {np.shape(valid)} differs from {label.shape}")
    return label, _as_bool(valid, "valid")


@dataclass
class ConfusionMatrix:
    """Counts of a binary change map against its reference; changed is the positive class.

    Attributes:
        tp: changed pixels predicted changed.
        fp: unchanged pixels predicted changed.
        fn: changed pixels predicted unchanged.
        tn: unchanged pixels predicted unchanged.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def update(
        self, pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None
    ) -> ConfusionMatrix:
        """Add the pixels of one image to the counts, in place.

        Args:
            pred: predicted change (bool, or integers where non-zero means changed).
            label: reference change, same shape and convention as ``pred``.
            valid: pixels to score; False pixels (nodata, outside a partial reference) are
                ignored. None scores every pixel.

        Returns:
            This matrix, so calls can be chained.

        Raises:
            ValueError: when the shapes differ.
            TypeError: when an array holds floats (threshold probabilities first).
        """
        label, valid = _scored(label, valid, [pred])
        pred = _as_bool(pred, "pred")
        codes = pred[valid].astype(np.uint8) * 2 + label[valid]
        tn, fn, fp, tp = np.bincount(codes.ravel(), minlength=4).tolist()
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += tn
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Return the matrix of both sets of pixels together."""
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return ConfusionMatrix(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Number of scored pixels."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """Changed-class precision ``tp / (tp + fp)``."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Changed-class recall ``tp / (tp + fn)``."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Changed-class F1 ``2 tp / (2 tp + fp + fn)``."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def f1_unchanged(self) -> float:
        """Unchanged-class F1 ``2 tn / (2 tn + fp + fn)``."""
        return _ratio(2 * self.tn, 2 * self.tn + self.fp + self.fn)

    @property
    def iou(self) -> float:
        """Changed-class intersection over union ``tp / (tp + fp + fn)``."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def oa(self) -> float:
        """Overall accuracy ``(tp + tn) / total``."""
        return _ratio(self.tp + self.tn, self.total)

    @property
    def kappa(self) -> float:
        """Cohen's kappa ``(po - pe) / (1 - pe)``; 0.0 when ``pe`` is 1 (a single class)."""
        n = self.total
        if n == 0:
            return 0.0
        changed = (self.tp + self.fp) * (self.tp + self.fn)
        unchanged = (self.fn + self.tn) * (self.fp + self.tn)
        # Exact integer arithmetic: (po - pe) / (1 - pe) = (n*agree - chance) / (n*n - chance).
        chance = changed + unchanged
        return _ratio(n * (self.tp + self.tn) - chance, n * n - chance)

    @property
    def mean_f1_two_class(self) -> float:
        """Mean of the changed-class and the unchanged-class F1 (not the changed-class F1)."""
        return (self.f1 + self.f1_unchanged) / 2.0

    @property
    def mean_f1(self) -> float:
        """Alias of :attr:`mean_f1_two_class`: the two-class mean F1, reported only beside F1."""
        return self.mean_f1_two_class

    def as_dict(self) -> dict[str, float | int]:
        """Return the scores and counts under stable keys for reports and JSON events.

        Returns:
            ``precision recall f1 iou oa kappa mean_f1_two_class`` as floats and
            ``tp fp fn tn`` as ints.
        """
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "iou": self.iou,
            "oa": self.oa,
            "kappa": self.kappa,
            "mean_f1_two_class": self.mean_f1_two_class,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def default_thresholds() -> np.ndarray:
    """Return the thresholds 0.01, 0.02, ..., 0.99."""
    return np.round(np.arange(1, 100) / 100.0, 2)


class ThresholdSweep:
    """Confusion matrices of a probability map at many thresholds, accumulated over images.

    A pixel is predicted changed at threshold ``t`` when its probability is ``>= t``. Each update
    bins the probabilities by how many thresholds they reach and counts changed and unchanged
    reference pixels per bin, so the cost is one sort-search per pixel whatever the number of
    thresholds, and the matrices are exact (no rounding of probabilities). Non-finite
    probabilities are not scored.

    This uses the ground truth to pick the threshold: report its result only as "F1 at the best
    threshold (uses ground truth)".
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None) -> None:
        """Prepare empty counts.

        Args:
            thresholds: candidate thresholds; None uses :func:`default_thresholds`.

        Raises:
            ValueError: when no threshold is given or one is not finite.
        """
        values = default_thresholds() if thresholds is None else np.asarray(thresholds, float)
        values = np.unique(values.ravel())
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError("thresholds must be a non-empty sequence of finite numbers")
        self._thresholds = values
        self._positives = np.zeros(values.size + 1, dtype=np.int64)
        self._negatives = np.zeros(values.size + 1, dtype=np.int64)

    @property
    def thresholds(self) -> np.ndarray:
        """The sorted, unique thresholds (a copy)."""
        return self._thresholds.copy()

    def update(self, prob: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add the pixels of one image.

        Args:
            prob: change probability per pixel (any real dtype).
            label: reference change (bool, or integers where non-zero means changed).
            valid: pixels to score; None scores every pixel with a finite probability.

        Raises:
            ValueError: when the shapes differ.
        """
        label, valid = _scored(label, valid, [prob])
        prob = np.asarray(prob, dtype=np.float64)
        valid = valid & np.isfinite(prob)
        # Number of thresholds each probability reaches: predicted changed at t_j iff bin > j.
        bins = np.searchsorted(self._thresholds, prob[valid], side="right")
        changed = label[valid]
        size = self._thresholds.size + 1
        self._positives += np.bincount(bins[changed], minlength=size)
        self._negatives += np.bincount(bins[~changed], minlength=size)

    def matrices(self) -> list[ConfusionMatrix]:
        """Return one confusion matrix per threshold, in the order of :attr:`thresholds`."""
        # Pixels with bin > j are predicted changed at threshold j: suffix sums from bin j + 1.
        tp = np.cumsum(self._positives[::-1])[::-1][1:]
        fp = np.cumsum(self._negatives[::-1])[::-1][1:]
        fn = int(self._positives.sum()) - tp
        tn = int(self._negatives.sum()) - fp
        return [
            ConfusionMatrix(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(tp, fp, fn, tn)
        ]

    def best(self) -> tuple[float, ConfusionMatrix]:
        """Return the threshold with the highest changed-class F1 and its matrix.

        Ties go to the lowest threshold.
        """
        matrices = self.matrices()
        index = int(np.argmax([matrix.f1 for matrix in matrices]))
        return float(self._thresholds[index]), matrices[index]


def best_threshold_f1(
    prob: np.ndarray,
    label: np.ndarray,
    valid: np.ndarray | None = None,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> tuple[float, ConfusionMatrix]:
    """Return the threshold with the best changed-class F1 on one image, and its matrix.

    Uses the ground truth: for benchmark reports only. For many images, feed a
    :class:`ThresholdSweep` instead.

    Args:
        prob: change probability per pixel.
        label: reference change.
        valid: pixels to score, or None for all.
        thresholds: candidate thresholds, or None for 0.01 ... 0.99.

    Returns:
        ``(threshold, matrix)``.
    """
    sweep = ThresholdSweep(thresholds)
    sweep.update(prob, label, valid)
    return sweep.best()
