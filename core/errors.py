"""Exceptions that carry a message meant for the user.

A :class:`KdmsiError` message is one sentence naming the file and what to do; the CLI prints it
without a traceback and exits with status 2.
"""

from __future__ import annotations


class KdmsiError(Exception):
    """A problem the user can fix (bad input, missing file, wrong option)."""


class Canceled(Exception):
    """Raised when the caller asked to stop (``is_canceled`` returned True or SIGTERM arrived)."""
