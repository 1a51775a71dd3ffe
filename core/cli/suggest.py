"""Suggest where to tag next: tiles where the model sees the most change, and tags it contradicts.

Every tile of the tag layer is scored with the map ``detect --method auto`` draws, at single
scale: its highest value over the tile's valid pixels (:mod:`core.workflows.suggest`). The output
GeoPackage holds the ``--count`` untagged tiles with the highest scores (``reason`` =
``most_change``) and the tagged tiles whose score, cut at that map's single-scale threshold,
contradicts their tag (``reason`` = ``disagrees``), with fields ``tile_id``, ``score``,
``label``, ``reason`` and ``rank``, in A's CRS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.events import Reporter
from core.cli.options import add_overwrite, add_pair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi suggest``."""
    add_pair(parser)
    parser.add_argument("--model", type=Path, required=True, help="model file from `kdmsi train`")
    parser.add_argument(
        "--tags", type=Path, required=True, help="tag layer (.gpkg) from `kdmsi grid` or the plugin"
    )
    parser.add_argument("--out", type=Path, required=True, help="output suggestions (.gpkg)")
    parser.add_argument(
        "--count",
        type=int,
        default=20,
        help="untagged tiles to suggest, where the model sees the most change (default 20)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass")
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Score the tiles, write the suggestions and report how many of each kind."""
    from core.errors import KdmsiError
    from core.runtime.devices import pick_device
    from core.workflows.suggest import (
        DISAGREES,
        MOST_CHANGE,
        SuggestParams,
        choose,
        score_tiles,
        write_suggestions,
    )

    if args.count < 0:
        raise KdmsiError(f"--count {args.count} is negative; give 0 or more tiles.")
    callbacks = reporter.callbacks("suggest")
    device = pick_device(args.device, callbacks.log)
    params = SuggestParams(count=args.count, bands=args.bands, batch_size=args.batch_size)
    scores, grid, chosen = score_tiles(
        args.model, args.before, args.after, args.tags, device, params, callbacks
    )
    threshold = chosen.threshold
    suggestions = choose(scores, threshold, args.count)
    write_suggestions(args.out, grid, suggestions, args.overwrite)
    counts = {
        reason: sum(s.reason == reason for s in suggestions) for reason in (MOST_CHANGE, DISAGREES)
    }
    callbacks.progress(1.0, "suggestions written")
    reporter.result(
        {"suggestions": str(args.out)},
        {**counts, "threshold": threshold, "tiles": len(scores), "method": chosen.method},
        f"{args.out}: {counts[MOST_CHANGE]} untagged tiles where the model sees the most change "
        f"and {counts[DISAGREES]} tags "
        f"the model disagrees with (threshold {threshold:.3f}, {len(scores)} tiles scored)",
    )
