"""Benchmark every method side by side on dataset folders in the A/B/label layout.

Tiles every pair, splits the tiles into train and test by a seeded stratified rule (``list/``
files honoured), trains KD-MSI on the train tiles' tags only, predicts the test tiles and scores
CVA, CAM (teacher only), KD-MSI single-scale, KD-MSI with MSI and KD-MSI refined with one
confusion matrix each. Several ``--seeds`` give mean ± std. Writes a JSON file and prints a
Markdown table. ``--budget N`` tags only N training tiles (a user's budget).

``--suite FILE --data-root DIR`` runs the transfer suite instead: every dataset family of the
suite file separately, at each of ``--budgets`` (0 = all training tiles), with a table per budget
(families x methods and the mean over families) and a learning-curve PNG per family.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.choices import CHOICES, DEFAULTS, STRATEGIES
from core.cli.events import Reporter
from core.cli.options import add_affinity_rounds, add_epochs, add_min_steps
from core.errors import KdmsiError
from core.io.bands import parse_bands

if TYPE_CHECKING:
    import torch

    from core.eval.benchmark import BenchmarkParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi benchmark``."""
    parser.add_argument("--data", type=Path, nargs="+", help="dataset folders (pooled)")
    parser.add_argument("--suite", type=Path, help="suite file: run every family separately")
    parser.add_argument(
        "--data-root", type=Path, help="folder holding the suite's dataset folders (--suite)"
    )
    parser.add_argument(
        "--budget", type=int, default=0, help="tag only this many training tiles (0: all)"
    )
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[0, 48], help="tag budgets of --suite"
    )
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="random",
        help="how a --budget is chosen: at random per class, or half at random and half where "
        "a first model sees the most change (suggest-peaks: what kdmsi suggest proposes) or is "
        "least sure (suggest: what it proposed until session 22)",
    )  # fmt: skip
    parser.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=["random"],
        help="strategies compared at each nonzero --budgets of --suite",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_epochs(parser)
    add_min_steps(parser)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--backbone", default=DEFAULTS.backbone, choices=CHOICES["backbone"])
    parser.add_argument("--refine-epochs", type=int, default=8, help="0 skips the refinement row")
    add_affinity_rounds(parser)
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="score a run folder's finished model.pt (and read a suite run's result.json) "
        "instead of running again: an interrupted run goes on where it stopped",
    )
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
    parser.add_argument(
        "--part", type=parse_part, metavar="K/N",
        help="--suite: run only every N-th family from the K-th (0/2 and 1/2 split a suite "
        "between two processes; a last run with --reuse-models and the same --run-dir gathers "
        "the tables)",
    )  # fmt: skip


def parse_part(text: str) -> tuple[int, int]:
    """``K/N`` -> ``(K, N)`` with 0 <= K < N.

    Raises:
        argparse.ArgumentTypeError: anything else, in one sentence.
    """
    index, _slash, count = text.partition("/")
    if index.isdigit() and count.isdigit() and int(index) < int(count):
        return int(index), int(count)
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a part: write K/N with 0 <= K < N, e.g. 0/2 and 1/2 for two processes"
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Run the protocol for each seed, write the JSON and print the table."""
    from core.eval.benchmark import markdown_table, run_benchmark
    from core.runtime.devices import pick_device

    if (args.data is None) == (args.suite is None):
        raise KdmsiError("Give either --data FOLDER [FOLDER ...] or --suite FILE --data-root DIR.")
    callbacks = reporter.callbacks("benchmark")
    device = pick_device(args.device, callbacks.log)
    run_root = args.run_dir or args.out.with_suffix("")
    if args.suite is not None:
        run_suite_command(args, reporter, base_params(args, 0), device, run_root)
        return
    results, start = [], time.perf_counter()
    for seed in args.seeds:
        params = base_params(args, seed)
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


def base_params(args: argparse.Namespace, seed: int) -> BenchmarkParams:
    """The protocol's parameters from the options, for one seed."""
    from core.eval.benchmark import BenchmarkParams
    from core.train.refinement import RefineParams
    from core.train.trainer import TrainParams

    return BenchmarkParams(
        tile=args.tile,
        train_fraction=args.train_fraction,
        budget=args.budget,
        strategy=args.strategy,
        seed=seed,
        bands=args.bands,
        train=TrainParams(
            backbone=args.backbone,
            epochs=args.epochs,
            min_steps=args.min_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=seed,
            output_stride=args.output_stride,
            precision=args.precision,
            affinity_rounds=args.affinity_rounds,
        ),
        refine=RefineParams(epochs=args.refine_epochs, seed=seed),
        reuse=args.reuse_models,
    )


def run_suite_command(
    args: argparse.Namespace,
    reporter: Reporter,
    base: BenchmarkParams,
    device: torch.device,
    run_root: Path,
) -> None:
    """``--suite``: every family, budget and seed; JSON, tables and learning curves."""
    from core.eval.curves import write_learning_curves
    from core.eval.suite import load_families, markdown_tables, part_of, run_suite, settings_of

    if args.data_root is None:
        raise KdmsiError("--suite needs --data-root DIR, the folder that holds its datasets.")
    callbacks = reporter.callbacks("benchmark")
    start = time.perf_counter()
    families = load_families(args.suite, args.data_root, callbacks)
    if args.part is not None:
        families = part_of(families, args.part)
        names = ", ".join(f.name for f in families) or "no family"
        callbacks.info(f"Part {args.part[0]}/{args.part[1]} of the suite: {names}.")
    settings = settings_of(tuple(args.budgets), tuple(args.strategies))
    results = run_suite(families, base, settings, tuple(args.seeds), run_root, device, callbacks)
    tables = markdown_tables(results)
    curves = write_learning_curves(results, run_root / "curves")
    payload = {
        "command": "kdmsi benchmark " + " ".join(str(a) for a in reporter_argv(args)),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {device}",
        "wall_seconds": time.perf_counter() - start,
        "tables_markdown": tables,
        "curves": [str(p) for p in curves],
        **results,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str))
    reporter.result({"results": str(args.out)}, {"wall_seconds": payload["wall_seconds"]}, tables)


def reporter_argv(args: argparse.Namespace) -> list[str]:
    """The options as given, for the record in the results file."""
    if args.suite is not None:
        parts = ["--suite", str(args.suite), "--data-root", str(args.data_root)]
        parts += ["--budgets", *map(str, args.budgets), "--strategies", *args.strategies]
        parts += ["--out", str(args.out)]
        parts += ["--part", f"{args.part[0]}/{args.part[1]}"] if args.part else []
    else:
        parts = ["--data", *map(str, args.data), "--out", str(args.out), "--tile", str(args.tile)]
        parts += ["--budget", str(args.budget), "--strategy", args.strategy] if args.budget else []
    parts += ["--seeds", *map(str, args.seeds), "--epochs", str(args.epochs), "--lr", str(args.lr)]
    parts += ["--refine-epochs", str(args.refine_epochs), "--backbone", args.backbone]
    parts += ["--output-stride", str(args.output_stride), "--precision", args.precision]
    parts += ["--min-steps", str(args.min_steps)] if args.min_steps else []
    if args.affinity_rounds:
        parts += ["--affinity-rounds", str(args.affinity_rounds)]
    if args.bands:
        parts += ["--bands", ",".join(map(str, args.bands))]
    return parts + (["--reuse-models"] if args.reuse_models else [])
