"""Options shared by several subcommands, declared once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from core.choices import DEFAULTS
from core.io.bands import parse_bands


def add_pair(parser: argparse.ArgumentParser) -> None:
    """``--before``, ``--after`` and ``--bands``."""
    parser.add_argument(
        "--before", "-a", type=Path, required=True, help="raster of the first date (A)"
    )
    parser.add_argument(
        "--after", "-b", type=Path, required=True, help="raster of the second date (B)"
    )
    parser.add_argument(
        "--bands",
        type=parse_bands,
        default=None,
        help="1-based bands to use from both dates, e.g. 3,2,1 (default: the first three)",
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``."""
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_epochs(parser: argparse.ArgumentParser) -> None:
    """``--epochs``, defaulting to the declared training default (no torch import)."""
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS.epochs,
        help=f"training epochs (default {DEFAULTS.epochs}; the best is kept; 20 runs three times "
        "faster on a CPU)",
    )


def whole_number(most: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of 0 or more (and at most ``most``, if given)."""
    span = "of 0 or more" if most is None else f"from 0 to {most}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0 or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {span}")
        return value

    return parse


def add_min_steps(parser: argparse.ArgumentParser) -> None:
    """``--min-steps``: lengthen the epochs when a few tags make them short."""
    parser.add_argument(
        "--min-steps",
        type=whole_number(),
        default=DEFAULTS.min_steps,
        help="train at least this many optimizer steps, raising --epochs when the tags are few "
        f"(an epoch is one step per {DEFAULTS.batch_size} tiles; default {DEFAULTS.min_steps}: "
        "--epochs alone)",
    )


def add_affinity_rounds(parser: argparse.ArgumentParser) -> None:
    """``--affinity-rounds``: refine the combined map with the pair's colours (opt-in)."""
    parser.add_argument(
        "--affinity-rounds",
        type=whole_number(50),
        default=DEFAULTS.affinity_rounds,
        help="rounds of refining the student-and-CVA map along the images' colour edges "
        f"(default {DEFAULTS.affinity_rounds}: off; {DEFAULTS.affinity_rounds_aerial} raised F1 "
        "by about 0.02 on aerial photographs and lowered it on 10 m Sentinel-2 cities and SAR, "
        "BENCHMARKS.md)",
    )
