"""Run the performance benchmarks and write their JSON and their section of BENCHMARKS.md.

Benchmarks: inference throughput of KD-MSI (single scale and MSI) against a naive per-window
loop; peak memory of ``kdmsi detect`` on generated pairs of 2,000, 8,000 and 16,000 px, and
the time its probability output's internal overviews take to build at 8,000 and 16,000 px;
``kdmsi vectorize`` against ``gdal_polygonize.py``; training throughput and memory; the
arithmetic bound (FLOPs per megapixel against the machine's measured peak). Inputs are
generated under ``--work`` and reused. ``--quick`` runs everything on tiny inputs.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from core.cli.events import Reporter
from core.errors import KdmsiError

BENCHMARK_NAMES = ("inference", "memory", "vectorization", "training", "flops")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi perf``."""
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/kdmsi-perf"),
        help="folder for generated inputs and outputs, reused (default /tmp/kdmsi-perf)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("perf-results.json"), help="results JSON file"
    )
    parser.add_argument(
        "--markdown", type=Path, default=Path("BENCHMARKS.md"),
        help="file whose perf section (between <!-- perf:start/end --> markers) is replaced",
    )  # fmt: skip
    parser.add_argument("--no-markdown", action="store_true", help="write the JSON only")
    parser.add_argument("--quick", action="store_true", help="tiny inputs (tests the harness)")
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARK_NAMES, default=list(BENCHMARK_NAMES),
        help="run these benchmarks only",
    )  # fmt: skip


def _command_line(args: argparse.Namespace) -> str:
    """The command as a person would type it, for the report."""
    words = ["kdmsi", "perf", *(["--quick"] if args.quick else [])]
    words += ["--work", str(args.work), "--out", str(args.out)]
    words += ["--no-markdown"] if args.no_markdown else ["--markdown", str(args.markdown)]
    if tuple(args.only) != BENCHMARK_NAMES:
        words += ["--only", *args.only]
    return " ".join(shlex.quote(word) for word in words)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Run the benchmarks and write the results."""
    from core.perf.report import markdown, replace_section, write_json
    from core.perf.suite import PerfConfig, run_perf

    for path in (args.out, args.markdown):
        if not path.parent.is_dir():
            raise KdmsiError(f"The folder of {path} does not exist; create it first.")
    try:
        args.work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KdmsiError(
            f"Cannot create the work folder {args.work} ({exc}); choose --work."
        ) from exc
    only = tuple(args.only)
    config = PerfConfig.quick(only) if args.quick else PerfConfig(only=only)
    command = _command_line(args)
    results = run_perf(config, args.work, command, reporter.callbacks("perf"))
    write_json(args.out, results)
    outputs = {"json": str(args.out)}
    if not args.no_markdown and set(only) != set(BENCHMARK_NAMES):
        reporter.log(
            "warning",
            f"Only {', '.join(only)} ran, so the perf section of {args.markdown} was left as it "
            "is (it would lose the other rows); run every benchmark (make bench) to rewrite it.",
        )
    elif not args.no_markdown:
        replace_section(args.markdown, markdown(results))
        outputs["markdown"] = str(args.markdown)
    reporter.result(
        outputs, {"wall_s": results["wall_s"]},
        f"{args.out}: {len(only)} benchmark(s) in {results['wall_s'] / 60:.1f} min",
    )  # fmt: skip
