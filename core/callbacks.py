"""Callbacks through which long-running core functions report progress and check for cancel.

Core functions take one :class:`Callbacks` object instead of knowing about terminals, JSON
events or QGIS tasks. The CLI builds one that prints; tests build one that records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from core.errors import Canceled


def _ignore_progress(fraction: float, message: str) -> None:
    del fraction, message


def _ignore_log(level: str, message: str) -> None:
    del level, message


def _ignore_metric(name: str, value: float, step: int) -> None:
    del name, value, step


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Callbacks:
    """Hooks a core function calls while it works.

    Attributes:
        progress: ``progress(fraction, message)`` with fraction in [0, 1].
        log: ``log(level, message)`` with level ``debug``, ``info`` or ``warning``.
        metric: ``metric(name, value, step)`` for training curves.
        is_canceled: returns True when the caller wants the work stopped.
    """

    progress: Callable[[float, str], None] = field(default=_ignore_progress)
    log: Callable[[str, str], None] = field(default=_ignore_log)
    metric: Callable[[str, float, int], None] = field(default=_ignore_metric)
    is_canceled: Callable[[], bool] = field(default=_never)

    def info(self, message: str) -> None:
        """Log an informational message."""
        self.log("info", message)

    def warning(self, message: str) -> None:
        """Log a warning."""
        self.log("warning", message)

    def check_canceled(self) -> None:
        """Raise :class:`Canceled` when the caller asked to stop.

        Raises:
            Canceled: if ``is_canceled()`` is True.
        """
        if self.is_canceled():
            raise Canceled("canceled by the user")

    def without_progress(self) -> Callbacks:
        """The same hooks without progress: for a step whose own 0-100 % would mislead."""
        return replace(self, progress=_ignore_progress)

    def within(self, start: float, end: float) -> Callbacks:
        """The same hooks with progress mapped into ``[start, end]``: one step of several.

        Args:
            start: the overall fraction at which this step begins.
            end: the overall fraction at which it ends.
        """
        outer = self.progress

        def progress(fraction: float, message: str) -> None:
            outer(start + (end - start) * fraction, message)

        return replace(self, progress=progress)
