"""Training throughput and peak memory of the KD-MSI trainer, measured in fresh child processes.

Each case (tile size, batch size, :class:`core.train.trainer.TrainParams` overrides) runs in its
own ``python -m core.perf.train_speed --child`` process so that its peak resident memory
(``ru_maxrss`` of that process) is its own. The child trains on random tiles through the real
training loop (:class:`core.train.trainer.Trainer`, batch building and augmentation included) and
times the steps after ``warmup`` steps. Compare variants as ratios measured in one run: other
work on the machine disturbs absolute numbers.

Run ``python -m core.perf.train_speed --help``; for example the before/after comparison of frozen
stages::

    python -m core.perf.train_speed --tile 256 128 --batch 8 --steps 6 \
        --variant before:frozen_stages=0 --variant after: --out speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHILD_TIMEOUT_S = 3600


@dataclass(frozen=True)
class SpeedCase:
    """One measurement.

    Attributes:
        name: label of the variant (e.g. ``before``).
        tile: tile size in pixels.
        batch: tiles per optimizer step.
        steps: timed steps.
        warmup: steps run before timing starts.
        overrides: :class:`core.train.trainer.TrainParams` fields to change (``frozen_stages``...).
        backbone: backbone name.
        env: environment variables of the child (e.g. ``OMP_WAIT_POLICY``).
        root: source tree the child imports ``core`` from (None: this one), to measure an
            older version in the same run (copy this file into its ``core/``).
    """

    name: str
    tile: int
    batch: int
    steps: int = 6
    warmup: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)
    backbone: str = "efficientnet-lite0"
    env: dict[str, str] = field(default_factory=dict)
    root: str | None = None


@dataclass(frozen=True)
class SpeedResult:
    """What one child measured.

    Attributes:
        case: the measurement.
        step_seconds: wall time of each timed step.
        peak_rss_mb: peak resident memory of the child process (MiB).
        cpu_seconds: CPU time of the process (all threads) per timed step; with one thread it
            measures the work, and is far less disturbed by other load than the wall time.
    """

    case: SpeedCase
    step_seconds: list[float]
    peak_rss_mb: float
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def tiles_per_s(self) -> float:
        """Training throughput from the median step time."""
        return self.case.batch / statistics.median(self.step_seconds)

    @property
    def tiles_per_cpu_s(self) -> float:
        """Tiles per CPU second (median step); NaN when not measured."""
        return self.case.batch / statistics.median(self.cpu_seconds or [float("nan")])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            **asdict(self),
            "tiles_per_s": self.tiles_per_s,
            "tiles_per_cpu_s": self.tiles_per_cpu_s,
        }


def run_case(case: SpeedCase) -> SpeedResult:
    """Train ``warmup + steps`` steps on random tiles in this process and time them.

    Args:
        case: what to measure.

    Returns:
        The step times and this process's peak resident memory.
    """
    import numpy as np
    import torch

    from core.callbacks import Callbacks
    from core.data.tilesets import TileSet
    from core.models.model_file import ModelInfo
    from core.train.trainer import Trainer, TrainParams

    n = case.batch * (case.warmup + case.steps)
    rng = np.random.default_rng(0)
    shape = (n, 3, case.tile, case.tile)
    tiles = TileSet(
        rng.integers(0, 256, shape, dtype=np.uint8),
        rng.integers(0, 256, shape, dtype=np.uint8),
        np.ones((n, case.tile, case.tile), dtype=bool),
        (np.arange(n) % 2).astype(np.int8),
        [f"random#{i}" for i in range(n)],
        [None] * n,
    )
    params = TrainParams(backbone=case.backbone, epochs=1, batch_size=case.batch, **case.overrides)
    stamps: list[tuple[float, float]] = []
    callbacks = Callbacks(
        metric=lambda name, value, step: stamps.append((time.perf_counter(), time.process_time()))
    )
    info = ModelInfo(params.backbone, "minus", "cat", 16, [1, 2, 3], case.tile)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(tiles, None, params, info, Path(run_dir), torch.device("cpu"), callbacks)
        start = (time.perf_counter(), time.process_time())
        trainer._train_epoch(1)
    times = [start, *stamps]
    walls = [b[0] - a[0] for a, b in zip(times[:-1], times[1:])][case.warmup :]
    cpus = [b[1] - a[1] for a, b in zip(times[:-1], times[1:])][case.warmup :]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return SpeedResult(case, walls, peak, cpus)


def measure(case: SpeedCase) -> SpeedResult:
    """Run :func:`run_case` in a fresh child process (its own peak memory).

    Args:
        case: what to measure.

    Returns:
        The child's measurement.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    command = [sys.executable, "-m", "core.perf.train_speed", "--child", json.dumps(asdict(case))]
    env = {**os.environ, **case.env}
    if case.root:
        env["PYTHONPATH"] = case.root
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=case.root
    )
    if done.returncode != 0:
        raise RuntimeError(f"speed child failed ({done.returncode}): {done.stderr[-2000:]}")
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    return SpeedResult(
        SpeedCase(**payload["case"]),
        payload["step_seconds"],
        payload["peak_rss_mb"],
        payload.get("cpu_seconds", []),
    )


@dataclass(frozen=True)
class Variant:
    """What differs between the compared cases.

    Attributes:
        name: label.
        overrides: TrainParams fields.
        env: environment variables of the child.
        root: source tree of ``core`` (None: this one).
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    root: str | None = None


def parse_variant(text: str) -> Variant:
    """Parse ``name[@ROOT]:key=value,env.NAME=value,...``.

    Values of TrainParams fields are read as JSON when they parse, else kept as strings; keys
    ``env.NAME`` set environment variables of the child; ``@ROOT`` imports ``core`` from ROOT.

    Args:
        text: the variant.

    Returns:
        The variant.
    """
    head, _, rest = text.partition(":")
    name, _, root = head.partition("@")
    overrides: dict[str, Any] = {}
    env: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = (part.strip() for part in item.partition("="))
        if key.startswith("env."):
            env[key[4:]] = value
            continue
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return Variant(name, overrides, env, root or None)


def compare(
    variants: list[Variant],
    tiles: list[int],
    batch: int,
    steps: int,
    repeats: int = 1,
) -> list[SpeedResult]:
    """Measure every variant at every tile size, interleaved, ``repeats`` times.

    Args:
        variants: what to compare.
        tiles: tile sizes.
        batch: batch size.
        steps: timed steps per child.
        repeats: rounds over all cases (interleaving spreads disturbances over variants).

    Returns:
        One result per child, in the order run.
    """
    results = []
    for _ in range(repeats):
        for tile in tiles:
            for v in variants:
                case = SpeedCase(v.name, tile, batch, steps, 2, v.overrides, env=v.env, root=v.root)
                results.append(measure(case))
                print(_line(results[-1]), file=sys.stderr, flush=True)
    return results


def _line(result: SpeedResult) -> str:
    case = result.case
    return (
        f"{case.name:>10} {case.tile:4d} px batch {case.batch}: {result.tiles_per_s:6.2f} tiles/s, "
        f"{result.tiles_per_cpu_s:6.2f} tiles/CPU-s, "
        f"peak {result.peak_rss_mb:7.0f} MiB"
    )


def summary(results: list[SpeedResult]) -> list[dict[str, Any]]:
    """Median throughput and peak memory per variant and tile size, with ratios to the first.

    Args:
        results: the measurements.

    Returns:
        One row per (tile, variant): ``tiles_per_s``, ``peak_rss_mb`` (medians over repeats) and
        ``speedup`` against the first variant at that tile size.
    """
    rows: list[dict[str, Any]] = []
    for tile in dict.fromkeys(r.case.tile for r in results):
        base = None
        for name in dict.fromkeys(r.case.name for r in results):
            mine = [r for r in results if r.case.tile == tile and r.case.name == name]
            speed = statistics.median(r.tiles_per_s for r in mine)
            cpu = statistics.median(r.tiles_per_cpu_s for r in mine)
            peak = statistics.median(r.peak_rss_mb for r in mine)
            base = base if base is not None else speed
            rows.append(
                {
                    "tile": tile,
                    "variant": name,
                    "tiles_per_s": round(speed, 3),
                    "tiles_per_cpu_s": round(cpu, 3),
                    "peak_rss_mb": round(peak),
                    "speedup": round(speed / base, 2),
                    "repeats": len(mine),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line: compare variants, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(prog="python -m core.perf.train_speed", description=__doc__)
    parser.add_argument("--tile", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per child")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all cases")
    parser.add_argument(
        "--variant",
        action="append",
        help="name:key=value,... TrainParams overrides (default: the defaults only)",
    )
    parser.add_argument("--out", type=Path, help="JSON file for the raw results and the summary")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(SpeedCase(**json.loads(args.child))).as_dict()))
        return 0
    variants = [parse_variant(v) for v in (args.variant or ["default:"])]
    results = compare(variants, args.tile, args.batch, args.steps, args.repeats)
    rows = summary(results)
    for row in rows:
        print(
            f"{row['tile']:4d} px {row['variant']:>10}: {row['tiles_per_s']:6.2f} tiles/s "
            f"(x{row['speedup']:.2f}), {row['tiles_per_cpu_s']:6.2f} tiles/CPU-s, "
            f"peak {row['peak_rss_mb']} MiB"
        )
    if args.out:
        payload = {"results": [r.as_dict() for r in results], "summary": rows}
        args.out.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
