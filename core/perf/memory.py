"""Benchmark 2: peak memory of ``kdmsi detect`` by raster size, each run in a fresh process.

Every run is ``python -m core detect ... --jsonl`` in its own child process; its peak resident
set size is the kernel's high-water mark (see :mod:`core.perf.child`). KD-MSI on hundreds of
megapixels takes far longer than a benchmark may on two CPU cores, so a run may be capped: past
its time it is cancelled (SIGTERM) and the result says which fraction of the windows it had
finished. The prediction holds only a strip of window rows in memory, so the peak is reached
within the first rows of windows; a capped run that finished several rows of windows shows that
peak, and the report says so rather than presenting it as a whole run. CVA (no network) runs to
completion at every size and shows the memory of reading, stretching and writing whole rasters.
A complete run includes building its outputs' internal overviews, which
:mod:`core.perf.overviews` times on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.perf.child import ChildRun, kdmsi_command, run_child
from core.perf.inputs import PairPaths


@dataclass(frozen=True)
class MemoryCase:
    """One detect run to measure.

    Attributes:
        size: edge of the generated pair in pixels.
        method: ``kdmsi`` (single scale, ``--scales 1``) or ``cva``.
        cap_s: cancel after this many seconds; 0 runs to completion.
    """

    size: int
    method: str
    cap_s: float = 0.0


def _command(case: MemoryCase, paths: PairPaths, model: Path, out: Path) -> list[str]:
    args = ["detect", "--method", case.method, "--before", str(paths.before), "--after",
            str(paths.after), "--out", str(out), "--overwrite"]  # fmt: skip
    if case.method == "kdmsi":
        args += ["--model", str(model), "--scales", "1", "--no-flip", "--device", "cpu"]
    return kdmsi_command(*args)


def _row(case: MemoryCase, run: ChildRun) -> dict:
    megapixels = case.size * case.size / 1e6
    complete = run.returncode == 0 and not run.stopped
    fraction = 1.0 if complete else run.last_fraction
    return {
        "size": case.size,
        "megapixels": megapixels,
        "method": case.method,
        "scales": "1" if case.method == "kdmsi" else "",
        "cap_s": case.cap_s,
        "complete": complete,
        "fraction_done": fraction,
        "wall_s": run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "mp_per_s": megapixels * fraction / run.wall_s if fraction else 0.0,
    }


def run_memory(
    pairs: dict[int, PairPaths], model: Path, work: Path, cases: list[MemoryCase]
) -> dict:
    """Run each case in a fresh process and report its peak memory, time and completed fraction.

    Raises:
        RuntimeError: when a run fails (other than by being stopped at its cap).
    """
    rows = []
    for case in cases:
        out = work / f"memory-{case.method}-{case.size}.tif"
        run = run_child(_command(case, pairs[case.size], model, out), cap_s=case.cap_s)
        run.check()
        rows.append(_row(case, run))
        for leftover in work.glob(f"memory-{case.method}-{case.size}*.tif"):
            leftover.unlink()
    kdmsi = [r["peak_rss_mb"] for r in rows if r["method"] == "kdmsi"]
    return {
        "rows": rows,
        "target_mb": 1536,
        "kdmsi_peak_max_mb": max(kdmsi) if kdmsi else None,
        "all_under_target": all(r["peak_rss_mb"] < 1536 for r in rows),
    }
