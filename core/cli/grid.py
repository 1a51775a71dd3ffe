"""Make a tag layer: a GeoPackage grid of tiles over the pair, in A's CRS.

Each tile gets ``label`` NULL (untagged), or, with ``--labels MASK``, 1 when any mask pixel in it
is changed and 0 otherwise (the weakly supervised protocol's image-level tags).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.choices import DEFAULTS
from core.cli.events import Reporter
from core.cli.options import add_overwrite, add_pair
from core.data.tags import read_tags, tags_from_mask, write_tags
from core.data.tiles import pair_tiles
from core.errors import KdmsiError
from core.io.geotiff import check_output
from core.io.rasters import RasterPair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi grid``."""
    add_pair(parser)
    parser.add_argument(
        "--tile",
        type=int,
        default=DEFAULTS.tile,
        help=f"tile size in pixels (default {DEFAULTS.tile})",
    )
    parser.add_argument(
        "--stride", type=int, default=0, help="step between tiles (default: tile size)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output tag layer (.gpkg)")
    parser.add_argument("--labels", type=Path, help="pixel change mask to derive tile tags from")
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Write the tag layer and report the tile counts."""
    callbacks = reporter.callbacks("grid")
    if args.stride < 0:
        raise KdmsiError(f"--stride {args.stride} is negative; give 0 (the tile size) or more.")
    check_output(args.out, args.overwrite)
    with RasterPair.open(args.before, args.after, args.bands, callbacks) as pair:
        tiles = pair_tiles(pair, args.tile, args.stride)
        if not tiles:
            raise KdmsiError(
                f"{args.before} and {args.after} have no pixel with data on both dates, so no "
                "tile can be made; check their nodata values and overlap."
            )
        labels = tags_from_mask(args.labels, tiles, pair.grid) if args.labels else {}
        meta = {
            "before": pair.before_path.resolve(),
            "after": pair.after_path.resolve(),
            "tile": args.tile,
            "stride": args.stride or args.tile,
            "width": pair.grid.width,
            "height": pair.grid.height,
        }
        write_tags(args.out, pair.grid, tiles, labels, meta, args.overwrite)
    counts = read_tags(args.out).counts
    callbacks.progress(1.0, "tag layer written")
    reporter.result(
        {"tags": str(args.out)},
        counts,
        f"{args.out}: {len(tiles)} tiles of {args.tile} px "
        f"({counts['changed']} changed, {counts['unchanged']} unchanged, "
        f"{counts['untagged']} untagged)",
    )
