"""Run KD-MSI end to end: grid, tags, train, detect, vectorize and a PNG quick-look.

Without ``--before``/``--after`` it uses a small generated synthetic scene (no network, no data
folder); with them it runs on your pair, tagged from ``--labels MASK`` or ``--tags TAGS.gpkg``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.events import Reporter
from core.io.bands import parse_bands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi demo``."""
    parser.add_argument(
        "--before", "-a", type=Path, help="before raster (default: synthetic scene)"
    )
    parser.add_argument("--after", "-b", type=Path, help="after raster")
    parser.add_argument("--labels", type=Path, help="pixel change mask to derive tile tags from")
    parser.add_argument("--tags", type=Path, help="tag layer instead of --labels")
    parser.add_argument("--bands", type=parse_bands)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Run the demo and print where its outputs are."""
    from core.workflows.demo import DemoInputs, run_demo

    inputs = DemoInputs(
        args.before, args.after, args.labels, args.tags, args.bands, args.tile, args.epochs
    )
    outputs = run_demo(args.out, inputs, reporter.callbacks("demo"), args.device)
    lines = [f"{key:>12}: {value}" for key, value in outputs.items()]
    reporter.result(outputs, {}, "KD-MSI demo finished.\n" + "\n".join(lines))
