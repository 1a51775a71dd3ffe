"""Output of the command line: human text, or one JSON event per line (``--jsonl``).

The JSON protocol (the QGIS plugin's worker reads it) is declared in ``core/cli/protocol.json``
and explained in docs/worker-protocol.md: events
``progress``, ``metric``, ``log``, ``result`` and ``error``. Logs always go to stderr in human mode;
under ``--jsonl`` stdout holds only JSON lines.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from core.callbacks import Callbacks

PROGRESS_INTERVAL_S = 0.5


class Reporter:
    """Turns core callbacks into terminal output or JSON events.

    Args:
        jsonl: emit JSON lines on stdout instead of human text.
        cancel: an event set by the SIGTERM handler; ``is_canceled`` reads it.
        out: stream for results and JSON events (stdout).
        err: stream for human logs and progress (stderr).
    """

    def __init__(
        self,
        jsonl: bool = False,
        cancel: threading.Event | None = None,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
    ) -> None:
        self.jsonl = jsonl
        self.cancel = cancel or threading.Event()
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._last_progress = 0.0
        self._stage = ""
        self._bar: Any = None

    def emit(self, event: dict[str, Any]) -> None:
        """Write one JSON event line and flush it."""
        self.out.write(json.dumps(event, default=str) + "\n")
        self.out.flush()

    def progress(self, fraction: float, message: str) -> None:
        """Report progress, throttled so a fast loop does not flood the reader."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        fraction = round(min(max(fraction, 0.0), 1.0), 4)
        if self.jsonl:
            self.emit(
                {
                    "event": "progress",
                    "fraction": fraction,
                    "stage": self._stage,
                    "message": message,
                }
            )
        elif self.err.isatty():
            self._draw_bar(fraction, message)

    def _draw_bar(self, fraction: float, message: str) -> None:
        """A tqdm progress bar on the terminal, closed when the work reaches 100 %."""
        from tqdm import tqdm

        if self._bar is None:
            bar_format = "{desc} {percentage:5.1f}%|{bar}| {elapsed}<{remaining} {postfix}"
            self._bar = tqdm(total=1.0, file=self.err, desc=self._stage, bar_format=bar_format)
        self._bar.n = fraction
        self._bar.set_postfix_str(message[:50], refresh=True)
        if fraction >= 1.0:
            self._bar.close()
            self._bar = None

    def log(self, level: str, message: str) -> None:
        """A log line (stderr in human mode, a ``log`` event under ``--jsonl``)."""
        if self.jsonl:
            self.emit({"event": "log", "level": level, "message": message})
        elif level != "debug":
            prefix = "warning: " if level == "warning" else ""
            if self._bar is not None:
                self._bar.write(f"{prefix}{message}", file=self.err)
            else:
                self.err.write(f"{prefix}{message}\n")
                self.err.flush()

    def metric(self, name: str, value: float, step: int) -> None:
        """A training curve point (only emitted under ``--jsonl``)."""
        if self.jsonl:
            self.emit({"event": "metric", "name": name, "value": float(value), "step": int(step)})

    def result(
        self, outputs: dict[str, Any], metrics: dict[str, Any] | None = None, text: str = ""
    ) -> None:
        """The final result: a ``result`` event, or ``text`` (default: the outputs) for people.

        The event carries ``text`` as its ``summary``, the sentence a panel shows.
        """
        if not text:
            text = "\n".join(f"{key}: {value}" for key, value in outputs.items())
        if self.jsonl:
            event = {"event": "result", "outputs": outputs, "metrics": metrics or {}}
            self.emit({**event, "summary": text.rstrip("\n")})
            return
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    def error(self, message: str) -> None:
        """A user-facing error: an ``error`` event, or ``error: ...`` on stderr."""
        if self.jsonl:
            self.emit({"event": "error", "message": message})
        else:
            self.err.write(f"error: {message}\n")
            self.err.flush()

    def callbacks(self, stage: str) -> Callbacks:
        """Callbacks for a core function, tagging progress events with ``stage``."""
        self._stage = stage
        return Callbacks(
            progress=self.progress, log=self.log, metric=self.metric, is_canceled=self.cancel.is_set
        )
