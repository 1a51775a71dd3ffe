"""Turn a change probability (or mask) raster into change polygons.

Pixels at or above the threshold are change; polygons under ``--min-area`` (map units squared) or of
fewer than ``--min-pixels`` pixels (default 9: specks of change say little and bury the real
polygons; 0 keeps every one) are dropped, and so are change regions whose strongest pixel stays
under ``--peak-ratio`` times the threshold (default 1.25: on the product's maps such weak regions
are mostly false alarms; 1 keeps every region); ``--simplify`` (map units) simplifies without
breaking topology. The output format follows the suffix: ``.shp`` (Shapefile with .prj) or
``.gpkg``. Attributes: ``area``, ``mean_prob``, ``max_prob``. With ``--tags`` (the pair's tag
layer) tiles tagged unchanged get no polygon, and tiles tagged changed that end with none are
named.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from core.callbacks import Callbacks
from core.choices import DEFAULTS
from core.cli.events import Reporter
from core.cli.options import add_overwrite
from core.io.probability import stored_threshold
from core.io.rasters import open_raster

if TYPE_CHECKING:
    from core.vector.vectorize import VectorizeParams, VectorizeResult


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
        "--min-pixels", type=int, default=DEFAULTS.min_pixels,
        help=f"drop polygons of fewer pixels (default {DEFAULTS.min_pixels}; 0 keeps all)",
    )  # fmt: skip
    parser.add_argument(
        "--peak-ratio", type=float, default=DEFAULTS.peak_ratio,
        help="keep a change region only where its strongest pixel reaches this many times the "
        f"threshold (default {DEFAULTS.peak_ratio:g}; 1 keeps every region)",
    )  # fmt: skip
    parser.add_argument(
        "--simplify", type=float, default=0.0, help="simplification tolerance (map units)"
    )
    parser.add_argument(
        "--connectivity", type=int, choices=(4, 8), default=4, help="pixel connectivity"
    )
    parser.add_argument(
        "--tags", type=Path,
        help="the pair's tag layer: no polygon in tiles tagged unchanged, and a note on tiles "
        "tagged changed that get none",
    )  # fmt: skip
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Vectorize and report the polygon count."""
    from core.vector.vectorize import VectorizeParams, vectorize

    threshold = args.threshold if args.threshold is not None else stored_threshold(args.prob)
    params = VectorizeParams(
        threshold, args.min_area, args.simplify, args.connectivity, args.tags, args.min_pixels,
        args.peak_ratio,
    )  # fmt: skip
    callbacks = reporter.callbacks("vectorize")
    result = vectorize(args.prob, args.out, params, callbacks, args.overwrite)
    metrics = {"count": result.count, "total_area": result.total_area, "threshold": threshold}
    if args.tags is not None:
        report_tag_rules(result, callbacks)
        metrics["cleared_unchanged_tiles"] = len(result.cleared_tiles)
        metrics["changed_tiles_without_change"] = len(result.changed_without_change)
    reporter.result(
        {"polygons": str(result.path)},
        metrics,
        f"{result.path}: {result.count} change polygons covering "
        f"{area_in_words(args.prob, result.total_area)} ({left_out(params)})",
    )


def left_out(params: VectorizeParams) -> str:
    """The threshold and the regions the polygons leave out, in words.

    Example: ``threshold 0.3; regions under 9 pixels or never reaching 0.375 left out``.
    """
    rules = [f"under {params.min_pixels} pixels"] if params.min_pixels > 1 else []
    if params.peak_cut > params.threshold:
        rules.append(f"never reaching {params.peak_cut:.3g}")
    text = f"threshold {params.threshold:g}"
    return text + (f"; regions {' or '.join(rules)} left out" if rules else "")


def area_in_words(raster: Path, area: float) -> str:
    """An area in the raster's map units squared, said as pixels, share and (metres) hectares.

    Example: ``1,234 pixels (0.8 % of the raster, 12.3 ha)``; the hectares only when the map
    unit is the metre (a geographic CRS's square degrees mean nothing to a reader).
    """
    ds = open_raster(raster, "probability raster")
    transform = ds.GetGeoTransform()
    pixel = abs(transform[1] * transform[5] - transform[2] * transform[4]) or 1.0
    pixels = area / pixel
    share = 100.0 * pixels / max(ds.RasterXSize * ds.RasterYSize, 1)
    srs = ds.GetSpatialRef()
    metres = srs is not None and srs.IsProjected() and srs.GetLinearUnits() == 1.0
    hectares = f", {area / 10_000:,.1f} ha" if metres else ""
    return f"{pixels:,.0f} pixels ({share:.2g} % of the raster{hectares})"


def report_tag_rules(result: VectorizeResult, callbacks: Callbacks) -> None:
    """Say, in sentences, what the tags changed and which tagged tiles to look at."""
    if result.cleared_tiles:
        callbacks.info(
            f"Change found in {len(result.cleared_tiles)} tile(s) you tagged unchanged was left "
            "out of the polygons, as your tags say."
        )
    if result.changed_without_change:
        shown = ", ".join(map(str, result.changed_without_change[:20]))
        more = "..." if len(result.changed_without_change) > 20 else ""
        callbacks.warning(
            f"{len(result.changed_without_change)} tile(s) you tagged changed got no change "
            f"polygon at this threshold (tile ids {shown}{more}): check their tags, lower the "
            "threshold, or tag more tiles like them and train again (kdmsi suggest lists them)."
        )
