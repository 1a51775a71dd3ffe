"""Score a change map against a pixel label: changed-class precision, recall, F1, IoU, OA, kappa.

One confusion matrix is accumulated over all scored pixels. F1 is the changed class's; the
two-class mean F1 is printed beside it, labelled so. Nodata pixels are not scored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.events import Reporter
from core.eval.evaluate import evaluate_map
from core.io.probability import stored_threshold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi evaluate``."""
    parser.add_argument("--pred", type=Path, required=True, help="probability or mask raster")
    parser.add_argument("--label", type=Path, required=True, help="reference mask (> 0 is changed)")
    parser.add_argument(
        "--unchanged",
        type=Path,
        help="unchanged-samples mask of a partial reference (then --label holds changed samples)",
    )
    parser.add_argument(
        "--threshold", type=float, help="change threshold (default: stored by detect, else 0.5)"
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Print the metrics (a ``result`` event with them under ``--jsonl``)."""
    threshold = args.threshold if args.threshold is not None else stored_threshold(args.pred)
    matrix = evaluate_map(
        args.pred, args.label, threshold, args.unchanged, reporter.callbacks("evaluate")
    )
    metrics = matrix.as_dict()
    metrics["threshold"] = threshold
    text = (
        f"changed class: precision {matrix.precision:.4f}  recall {matrix.recall:.4f}  "
        f"F1 {matrix.f1:.4f}  IoU {matrix.iou:.4f}\n"
        f"overall accuracy {matrix.oa:.4f}  kappa {matrix.kappa:.4f}  "
        f"two-class mean F1 {matrix.mean_f1:.4f}\n"
        f"pixels scored {matrix.total}  (threshold {threshold:g})"
    )
    reporter.result({"prediction": str(args.pred)}, metrics, text)
