"""Compute a change probability map of a pair, written as a GeoTIFF on A's grid.

Methods: ``kdmsi`` (the trained student with Multiscale Sigmoid Inference; ``--scales 1`` for single
scale; ``--engine onnx`` runs it with onnxruntime, ``--workers N`` in N processes), ``kdmsi-cva``
(the student's map combined with change vector analysis), ``kdmsi-refined`` (the refinement
network), ``cam`` (the teacher's CAM, the ablation without distillation) and ``cva`` (change vector
analysis with an Otsu threshold; no model needed). The threshold to use is stored in the GeoTIFF for
``vectorize`` and ``evaluate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.choices import CHOICES, DEFAULTS
from core.cli.events import Reporter
from core.cli.options import add_overwrite, add_pair
from core.errors import KdmsiError
from core.io.geotiff import check_output, geotiff_bytes
from core.io.rasters import RasterPair, grid_of, open_raster

if TYPE_CHECKING:
    from core.runtime.distributed import DistEnv

METHODS = CHOICES["method"]


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.5,1,1.25,2"`` -> a tuple of positive floats."""
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        scales = ()
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of positive scales such as 0.5,1,1.25,2"
        )
    return scales


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi detect``."""
    add_pair(parser)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULTS.method,
        help="change detector; auto (default): the map chosen on the held-out tags after "
        "training (usually kdmsi-cva: the trained network combined with change vector "
        "analysis), kdmsi-refined when the model holds a refinement network",
    )
    parser.add_argument(
        "--model", type=Path, help="model file from `kdmsi train` (learned methods)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output probability GeoTIFF")
    parser.add_argument("--mask-out", type=Path, help="CVA only: 0/1 mask (default OUT_mask.tif)")
    parser.add_argument(
        "--scales",
        type=parse_scales,
        default=DEFAULTS.scales,
        help="MSI scales (1 = single scale)",
    )
    parser.add_argument("--no-flip", action="store_true", help="MSI without horizontal flips")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="windows read together")
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="largest window size (default: the tile size the model was trained on)",
    )
    parser.add_argument(
        "--engine",
        choices=CHOICES["engine"],
        default=DEFAULTS.engine,
        help="onnx runs the student with onnxruntime (--method kdmsi); auto: onnx for a .onnx "
        "model from `kdmsi export`, else torch",
    )
    parser.add_argument(
        "--precision",
        choices=CHOICES["precision"],
        default=DEFAULTS.precision,
        help="torch engine: auto runs float16 on CUDA, bfloat16 on CPUs with native bfloat16 "
        "(about twice as fast), else float32",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the raster by bands of rows"
    )
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Run the chosen detector over the whole pair."""
    if args.method == "cva":
        callbacks = reporter.callbacks("detect")
        from core.detect.cva import run_cva

        mask_out = args.mask_out or args.out.with_name(f"{args.out.stem}_mask.tif")
        with RasterPair.open(args.before, args.after, args.bands, callbacks) as pair:
            check_output(args.out, args.overwrite, geotiff_bytes(pair.grid))
            check_output(mask_out, args.overwrite, geotiff_bytes(pair.grid, dtype=np.uint8))
            result = run_cva(pair, args.out, mask_out, callbacks, args.overwrite)
        outputs = {"probability": str(result.probability), "mask": str(result.mask)}
        reporter.result(
            outputs,
            {"threshold": 0.5, "cva_magnitude_threshold": result.threshold},
            f"Change probability written to {result.probability} and its mask to {result.mask} "
            f"(change vector analysis; change where the magnitude is at least "
            f"{result.threshold:.3f}).",
        )
        return
    if args.model is None:
        raise KdmsiError(
            f"--method {args.method} needs --model FILE from `kdmsi train`; "
            "--method cva needs no model."
        )
    if args.workers < 1 or args.batch_size < 1 or args.window < 0:
        raise KdmsiError("--workers and --batch-size must be at least 1 and --window positive.")
    from core.runtime import distributed

    env = distributed.detect()
    try:
        _detect_with_model(args, reporter, env)
    finally:
        distributed.stop()


def _detect_with_model(args: argparse.Namespace, reporter: Reporter, env: DistEnv) -> None:
    """Run a learned method in this process (one rank of ``env`` under ``torchrun``)."""
    from core.callbacks import Callbacks
    from core.detect.pair import detect_with_model
    from core.detect.params import DetectParams

    callbacks = reporter.callbacks("detect")
    if not env.is_main:  # other ranks only listen for cancel
        callbacks = Callbacks(is_canceled=callbacks.is_canceled)
    if env.is_main:
        grid = grid_of(open_raster(args.before, "before raster"))
        check_output(args.out, args.overwrite, geotiff_bytes(grid))
    params = DetectParams(
        args.method, args.scales, not args.no_flip, args.device, args.batch_size, args.window,
        engine=args.engine, workers=args.workers, precision=args.precision,
    )  # fmt: skip
    threshold = detect_with_model(
        args.before, args.after, args.model, args.out, params, args.bands, callbacks,
        args.overwrite, env,
    )  # fmt: skip
    if env.is_main:
        reporter.result(
            {"probability": str(args.out)},
            {"threshold": threshold},
            f"Change probability written to {args.out}; pixels at or above {threshold:.3f} "
            "are change.",
        )
