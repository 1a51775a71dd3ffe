"""Compute a change probability map of a pair, written as a GeoTIFF on A's grid.

Methods: ``cva`` (change vector analysis with an Otsu threshold; no training needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.commands.options import add_overwrite, add_pair
from core.cva import run_cva
from core.events import Reporter
from core.rasters import RasterPair

METHODS = ("cva",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi detect``."""
    add_pair(parser)
    parser.add_argument("--method", choices=METHODS, default="cva", help="change detector (default cva)")
    parser.add_argument("--out", type=Path, required=True, help="output probability GeoTIFF")
    parser.add_argument(
        "--mask-out", type=Path, help="output 0/1 change mask (default: OUT with _mask before .tif)"
    )
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Run the chosen detector over the whole pair."""
    callbacks = reporter.callbacks("detect")
    mask_out = args.mask_out or args.out.with_name(f"{args.out.stem}_mask.tif")
    with RasterPair.open(args.before, args.after, args.bands, callbacks) as pair:
        result = run_cva(pair, args.out, mask_out, callbacks, args.overwrite)
    reporter.result(
        {"probability": str(result.probability), "mask": str(result.mask)},
        {"threshold": 0.5, "cva_magnitude_threshold": result.threshold},
    )
