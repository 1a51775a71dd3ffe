"""Running a command in a fresh child process and measuring its wall time and peak memory.

Peak memory is the child's ``VmHWM`` from ``/proc/PID/status``: the kernel's high-water mark of
its resident set since it started the command (``exec`` starts it afresh), read every 50 ms
until it exits, so only a rise in its last 50 ms could be missed. (``ru_maxrss`` of
``os.wait4`` is no use here: it counts the parent's pages the child held between ``fork`` and
``exec``, the size of this process with torch loaded.) Lines of its
stdout are kept with the time they arrived (``--jsonl`` events), which lets a benchmark time the
steady part of a run. A run may be capped: past ``cap_s`` seconds it gets SIGTERM (``kdmsi``
cancels cleanly on it) and the result says it was stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ChildRun:
    """What one child run did.

    Attributes:
        command: the argument list.
        wall_s: seconds from start to exit.
        peak_rss_mb: peak resident set size of the command (``VmHWM``), MiB.
        returncode: exit status.
        stopped: True when the cap was reached and the child was sent SIGTERM.
        events: ``(seconds since start, event dict)`` of every JSON line on stdout.
        stderr_tail: the last lines of stderr (for error messages).
    """

    command: list[str]
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stopped: bool = False
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def last_fraction(self) -> float:
        """The last progress fraction the child reported (0 when none)."""
        fractions = [e["fraction"] for _t, e in self.events if e.get("event") == "progress"]
        return float(fractions[-1]) if fractions else 0.0

    def check(self) -> None:
        """Raise RuntimeError with the child's last error when it failed (and was not stopped)."""
        if self.returncode != 0 and not self.stopped:
            errors = [e.get("message", "") for _t, e in self.events if e.get("event") == "error"]
            detail = errors[-1] if errors else self.stderr_tail
            raise RuntimeError(f"{' '.join(self.command[:4])}... failed: {detail}")


def kdmsi_command(*args: str) -> list[str]:
    """``python -m core ARGS --jsonl`` with this interpreter."""
    return [sys.executable, "-m", "core", *args, "--jsonl"]


def _read_lines(stream: Any, start: float, sink: list) -> None:
    for line in stream:
        stamp = time.perf_counter() - start
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            sink.append((stamp, event))


def _read_tail(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)
        del sink[:-20]


def _high_water_mb(pid: int) -> float:
    """``VmHWM`` of a running process in MiB (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_child(
    command: list[str], cap_s: float = 0.0, env: dict[str, str] | None = None
) -> ChildRun:
    """Run ``command`` to completion (or to ``cap_s`` seconds, then SIGTERM) and measure it.

    Args:
        command: the argument list.
        cap_s: stop the child after this many seconds; 0 means no cap.
        env: environment of the child (default: this one).
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    events: list[tuple[float, dict[str, Any]]] = []
    tail: list[str] = []
    readers = [
        threading.Thread(target=_read_lines, args=(process.stdout, start, events), daemon=True),
        threading.Thread(target=_read_tail, args=(process.stderr, tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    stopped, peak = False, 0.0
    while True:
        peak = max(peak, _high_water_mb(process.pid))
        pid, status = os.waitpid(process.pid, os.WNOHANG)
        if pid:
            break
        if cap_s and not stopped and time.perf_counter() - start > cap_s:
            process.send_signal(signal.SIGTERM)
            stopped = True
        time.sleep(0.05)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout=5)
    return ChildRun(command, wall, peak, process.returncode, stopped, events, "".join(tail))
