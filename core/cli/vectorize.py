"""Turn a change probability (or mask) raster into change polygons.

Pixels at or above the threshold are change; polygons under ``--min-area`` (map units squared)
are dropped; ``--simplify`` (map units) simplifies without breaking topology. The output format
follows the suffix: ``.shp`` (Shapefile with .prj) or ``.gpkg``. Attributes: ``area``,
``mean_prob``, ``max_prob``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.events import Reporter
from core.cli.options import add_overwrite
from core.io.probability import stored_threshold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi vectorize``."""
    parser.add_argument("--prob", type=Path, required=True, help="probability or mask raster")
    parser.add_argument("--out", type=Path, required=True, help="output .shp or .gpkg")
    parser.add_argument(
        "--threshold",
        type=float,
        help="change threshold (default: the one stored in the raster by detect, else 0.5)",
    )
    parser.add_argument(
        "--min-area", type=float, default=0.0, help="drop smaller polygons (map units^2)"
    )
    parser.add_argument(
        "--simplify", type=float, default=0.0, help="simplification tolerance (map units)"
    )
    parser.add_argument(
        "--connectivity", type=int, choices=(4, 8), default=4, help="pixel connectivity"
    )
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Vectorize and report the polygon count."""
    from core.vector.vectorize import VectorizeParams, vectorize

    threshold = args.threshold if args.threshold is not None else stored_threshold(args.prob)
    params = VectorizeParams(threshold, args.min_area, args.simplify, args.connectivity)
    result = vectorize(args.prob, args.out, params, reporter.callbacks("vectorize"), args.overwrite)
    reporter.result(
        {"polygons": str(result.path)},
        {"count": result.count, "total_area": result.total_area, "threshold": threshold},
        f"{result.path}: {result.count} change polygons, total area {result.total_area:.6g} "
        f"(threshold {threshold:g})",
    )
