"""Benchmark every method side by side on dataset folders in the A/B/label layout.

Tiles every pair, splits the tiles into train and test by a seeded stratified rule (``list/``
files honoured), trains KD-MSI on the train tiles' tags only, predicts the test tiles and scores
CVA, CAM (teacher only), KD-MSI single-scale, KD-MSI with MSI and KD-MSI refined with one
confusion matrix each. Several ``--seeds`` give mean ± std. Writes a JSON file and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from core.choices import CHOICES, DEFAULTS
from core.cli.events import Reporter
from core.cli.options import add_epochs
from core.io.bands import parse_bands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi benchmark``."""
    parser.add_argument(
        "--data", type=Path, nargs="+", required=True, help="dataset folders (pooled)"
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_epochs(parser)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--backbone", default=DEFAULTS.backbone, choices=CHOICES["backbone"])
    parser.add_argument("--refine-epochs", type=int, default=8, help="0 skips the refinement row")
    parser.add_argument("--bands", type=parse_bands)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-stride", type=int, choices=(8, 16), default=16)
    parser.add_argument(
        "--precision",
        choices=CHOICES["precision"],
        default=DEFAULTS.precision,
        help="training and inference arithmetic (see kdmsi train --help)",
    )
    parser.add_argument(
        "--run-dir", type=Path, help="where models go (default: OUT without suffix)"
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Run the protocol for each seed, write the JSON and print the table."""
    from core.eval.benchmark import BenchmarkParams, markdown_table, run_benchmark
    from core.runtime.devices import pick_device
    from core.train.refinement import RefineParams
    from core.train.trainer import TrainParams

    callbacks = reporter.callbacks("benchmark")
    device = pick_device(args.device, callbacks.log)
    run_root = args.run_dir or args.out.with_suffix("")
    results, start = [], time.perf_counter()
    for seed in args.seeds:
        params = BenchmarkParams(
            tile=args.tile,
            train_fraction=args.train_fraction,
            seed=seed,
            bands=args.bands,
            train=TrainParams(
                backbone=args.backbone,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=seed,
                output_stride=args.output_stride,
                precision=args.precision,
            ),
            refine=RefineParams(epochs=args.refine_epochs, seed=seed),
        )
        results.append(
            run_benchmark(args.data, params, run_root / f"seed{seed}", device, callbacks)
        )
        callbacks.info(f"seed {seed}:\n{markdown_table(results[-1:])}")
    table = markdown_table(results)
    payload = {
        "command": "kdmsi benchmark " + " ".join(str(a) for a in reporter_argv(args)),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {device}",
        "wall_seconds": time.perf_counter() - start,
        "seeds": args.seeds,
        "table_markdown": table,
        "runs": results,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str))
    reporter.result({"results": str(args.out)}, {"wall_seconds": payload["wall_seconds"]}, table)


def reporter_argv(args: argparse.Namespace) -> list[str]:
    """The options as given, for the record in the results file."""
    parts = ["--data", *map(str, args.data), "--out", str(args.out), "--tile", str(args.tile)]
    parts += ["--seeds", *map(str, args.seeds), "--epochs", str(args.epochs), "--lr", str(args.lr)]
    parts += ["--refine-epochs", str(args.refine_epochs), "--backbone", args.backbone]
    parts += ["--output-stride", str(args.output_stride), "--precision", args.precision]
    if args.bands:
        parts += ["--bands", ",".join(map(str, args.bands))]
    return parts
