"""The ``kdmsi`` command line: subcommands, shared options and error handling.

Each subcommand lives in ``core/cli/<name>.py`` with ``add_arguments(parser)`` and
``run(args, reporter)``. ``kdmsi perf`` (``core/perf/command.py``) is a developer command: it is
registered only when :mod:`core.perf` is present, which it is not in the QGIS plugin's zip.
Commands import torch only inside ``run``, so ``kdmsi grid`` starts fast.
User errors print one sentence and exit with status 2 (an ``error`` event under ``--jsonl``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys
import threading
from types import FrameType

from core import __version__
from core.cli.events import Reporter
from core.cli.protocol import EXIT_STATUSES
from core.errors import Canceled, KdmsiError
from core.runtime.process import configure_process

COMMANDS = {
    "grid": "make a tile grid (tag layer) over a pair, optionally tagged from a pixel mask",
    "detect": "compute a change probability map of a pair",
    "vectorize": "turn a change map into polygons (Shapefile or GeoPackage)",
    "evaluate": "score a change map against a pixel label",
    "train": "train KD-MSI (teacher + student) from tile tags",
    "benchmark": "score every method side by side on labelled dataset folders",
    "demo": "run KD-MSI end to end on a synthetic scene or your pair",
    "suggest": "score the tiles with a model: where to tag next, and tags it disagrees with",
    "export": "export the trained student to ONNX (for onnxruntime inference)",
}
# Developer commands: registered by module name only when the module is installed.
DEV_COMMANDS = {
    "perf": (
        "core.perf.command",
        "performance benchmarks: speed, memory, vectorization (make bench)",
    ),
}
EXIT_UNEXPECTED = EXIT_STATUSES["unexpected_error"]
EXIT_USER_ERROR = EXIT_STATUSES["user_error"]
EXIT_CANCELED = EXIT_STATUSES["canceled"]


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors become :class:`KdmsiError` (so ``--jsonl`` sees them)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise KdmsiError(f"{self.prog}: {message}; see `{self.prog} --help`.")


def available_commands() -> dict[str, tuple[str, str]]:
    """Every subcommand that can run here: name -> (module, help)."""
    commands = {name: (f"core.cli.{name}", text) for name, text in COMMANDS.items()}
    for name, (module_name, text) in DEV_COMMANDS.items():
        if importlib.util.find_spec(module_name.rpartition(".")[0]) is not None:
            commands[name] = (module_name, text)
    return commands


def build_parser() -> argparse.ArgumentParser:
    """The full parser with one subparser per command."""
    parser = _Parser(prog="kdmsi", description="Weakly supervised change detection (KD-MSI).")
    parser.add_argument("--version", action="version", version=f"kdmsi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module_name, help_text) in available_commands().items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.add_argument(
            "--jsonl", action="store_true", help="one JSON event per line on stdout"
        )
        command.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        command.set_defaults(run=module.run)
    return parser


def _install_sigterm(cancel: threading.Event) -> None:
    """Make SIGTERM (the plugin's cancel) set ``cancel`` instead of killing the process."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        cancel.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    configure_process()
    cancel = threading.Event()
    reporter = Reporter(jsonl="--jsonl" in argv, cancel=cancel)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        _install_sigterm(cancel)
        args.run(args, reporter)
    except KdmsiError as exc:
        if debug:
            raise
        reporter.error(str(exc))
        return EXIT_USER_ERROR
    except Canceled:
        reporter.error("Canceled; outputs that were not finished were removed.")
        return EXIT_CANCELED
    except KeyboardInterrupt:
        reporter.error("Interrupted; outputs that were not finished were removed.")
        return EXIT_CANCELED
    except Exception as exc:
        if debug:
            raise
        reporter.error(f"Unexpected error: {exc!r}; rerun with --debug and report the traceback.")
        return EXIT_UNEXPECTED
    return 0
