"""Benchmark 4: training throughput (tiles per second) and peak memory of ``kdmsi train`` on CPU.

Each case is one epoch of ``kdmsi train --data DATASET --tile T --batch-size B --epochs 1
--device cpu --precision P --refine-epochs 0`` (teacher and student alone) in a fresh child
process (peak memory: the kernel's high-water mark). Throughput is taken from the ``metric``
events the command prints after every optimizer step, stamped when they arrive: the tiles of the
full batches after ``WARMUP_STEPS`` steps, divided by their time (see :func:`steady_rate`). It
leaves out the start (imports, reading tiles, building the networks), the first steps
(allocations) and the validation at the end of the epoch; the wall time of the whole process is
reported beside it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.perf.child import ChildRun, kdmsi_command, run_child

WARMUP_STEPS = 2


@dataclass(frozen=True)
class TrainCase:
    """One training run: tile size, batch size and ``--precision``."""

    tile: int
    batch_size: int = 8
    precision: str = "auto"


def steady_rate(
    run: ChildRun, batch_size: int, warmup: int = WARMUP_STEPS
) -> tuple[float | None, int]:
    """Tiles per second over the full steps after ``warmup`` (at least 1) steps; step count.

    The first steps allocate and warm caches, and the last step may hold a partial batch, so
    they are left out: the time runs from the end of step ``warmup`` to the end of the
    second-to-last step. None when fewer than two steps remain in between.
    """
    stamps = [t for t, e in run.events if e.get("event") == "metric" and e.get("name") == "loss"]
    timed = stamps[max(warmup, 1) - 1 : -1]
    if len(timed) < 3:
        return None, len(stamps)
    return batch_size * (len(timed) - 1) / (timed[-1] - timed[0]), len(stamps)


def run_training(dataset: Path, work: Path, cases: list[TrainCase]) -> dict:
    """Train one epoch per case and report tiles/s, steps, wall time and peak memory.

    Raises:
        RuntimeError: when a training run fails.
    """
    rows = []
    for case in cases:
        out = work / f"train-{case.tile}px"
        shutil.rmtree(out, ignore_errors=True)
        command = kdmsi_command(
            "train", "--data", str(dataset), "--tile", str(case.tile), "--batch-size",
            str(case.batch_size), "--epochs", "1", "--device", "cpu", "--seed", "0",
            "--precision", case.precision, "--refine-epochs", "0", "--out", str(out),
        )  # fmt: skip
        run = run_child(command)
        run.check()
        rate, steps = steady_rate(run, case.batch_size)
        rows.append({
            "tile": case.tile,
            "batch_size": case.batch_size,
            "precision": case.precision,
            "steps": steps,
            "tiles_per_s_steady": rate,
            "wall_s": run.wall_s,
            "peak_rss_mb": run.peak_rss_mb,
        })  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
    return {"dataset": str(dataset), "epochs": 1, "warmup_steps": WARMUP_STEPS, "rows": rows}
