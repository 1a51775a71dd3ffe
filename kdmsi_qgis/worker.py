"""Run the ``core`` command line in a worker process and read its JSON events.

The plugin never imports torch or ``core``: it runs ``<python> -m core <command> ... --jsonl``
with the folder that contains ``core`` on PYTHONPATH and reads one JSON object per line from the
worker's stdout (events ``progress``, ``metric``, ``log``, ``result``, ``error``).
"""

from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from qgis.core import QgsApplication, QgsSettings

from kdmsi_qgis.install_plan import base_python_candidates
from kdmsi_qgis.paths import core_root, source_tree_venv, venv_python
from kdmsi_qgis.protocol import EXIT_STATUSES

SETTING_PYTHON = "kdmsi/python"
ENV_PYTHON = "KDMSI_PYTHON"
TERMINATE_WAIT_S = 120.0
LOG_KEEP = 500

EventHandler = Callable[[dict], None]


class WorkerNotFound(RuntimeError):
    """No Python with the worker's dependencies was found."""


def managed_venv_dir() -> Path:
    """The managed environment in the QGIS profile folder (made by "Install dependencies")."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "kdmsi" / "venv"


def python_candidates() -> list[tuple[str, Path]]:
    """Worker interpreters in order of preference, each with where it came from."""
    found = []
    setting = QgsSettings().value(SETTING_PYTHON, "", type=str)
    if setting:
        found.append(("setting kdmsi/python", Path(setting)))
    if os.environ.get(ENV_PYTHON):
        found.append((f"environment variable {ENV_PYTHON}", Path(os.environ[ENV_PYTHON])))
    found.append(("the repository's .venv", venv_python(source_tree_venv())))
    found.append(("the managed environment", venv_python(managed_venv_dir())))
    return found


def chosen_python() -> str:
    """The interpreter chosen in the panel (QgsSettings ``kdmsi/python``; empty: none)."""
    return QgsSettings().value(SETTING_PYTHON, "", type=str)


def choose_python(path: str) -> Optional[str]:
    """Make ``path`` the worker's Python (empty: found automatically again).

    Returns:
        None when done, else the sentence saying why ``path`` cannot be used.
    """
    if path and not Path(path).is_file():
        return (
            f"{path} is not a file; choose the Python interpreter (python, or python.exe on "
            "Windows) of an environment that has torch."
        )
    if path:
        QgsSettings().setValue(SETTING_PYTHON, path)
    else:
        QgsSettings().remove(SETTING_PYTHON)
    return None


def find_python() -> tuple[str, str]:
    """The worker's Python and where it came from.

    Returns:
        ``(path, source)``.

    Raises:
        WorkerNotFound: when no candidate exists.
    """
    for source, path in python_candidates():
        if path.is_file():
            return str(path), source
    raise WorkerNotFound(
        "No Python with torch was found for the KD-MSI worker: run Raster > KD-MSI > "
        "Install dependencies, or choose a Python that has torch in the panel's Worker Python "
        "field."
    )


def worker_env() -> dict[str, str]:
    """The worker's environment: ``core`` importable, unbuffered output."""
    env = dict(os.environ)
    parts = [str(core_root())]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONHOME", None)
    return env


def cli_args(options: dict[str, Any]) -> list[str]:
    """``{"tile": 64, "overwrite": True, "bands": None}`` -> ``["--tile", "64", "--overwrite"]``.

    ``None``, ``False`` and ``""`` are left out; a list gives several values.
    """
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False or value == "":
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, *(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def build_command(command: str, options: dict[str, Any], python: Optional[str] = None) -> list:
    """The full worker command line for a ``kdmsi`` subcommand."""
    python = python or find_python()[0]
    return [python, "-m", "core", command, *cli_args(options), "--jsonl"]


def parse_line(line: str) -> dict:
    """One stdout line as an event; a non-JSON line becomes a ``log`` event."""
    line = line.strip()
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "log", "level": "info", "message": line}
    if not isinstance(event, dict) or "event" not in event:
        return {"event": "log", "level": "info", "message": line}
    return event


@dataclass
class WorkerOutcome:
    """What a worker run produced.

    Attributes:
        returncode: exit status (None if it could not start).
        outputs: the ``result`` event's outputs.
        metrics: the ``result`` event's metrics.
        error: the ``error`` event's message, or a description of a crash.
        logs: log lines (worker ``log`` events and stderr), the last few hundred.
        canceled: the run was canceled.
    """

    returncode: Optional[int] = None
    outputs: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    error: str = ""
    logs: list[str] = field(default_factory=list)
    canceled: bool = False

    @property
    def ok(self) -> bool:
        """The worker finished with a result."""
        return self.returncode == 0 and not self.error and not self.canceled

    def add_log(self, line: str) -> None:
        """Keep a log line (only the last ``LOG_KEEP``)."""
        self.logs.append(line)
        del self.logs[:-LOG_KEEP]

    def absorb(self, event: dict) -> None:
        """Record what an event says about the outcome."""
        kind = event.get("event")
        if kind == "result":
            self.outputs = dict(event.get("outputs") or {})
            self.metrics = dict(event.get("metrics") or {})
        elif kind == "error":
            self.error = str(event.get("message", "unknown error"))
            self.add_log(f"error: {self.error}")
        elif kind == "log":
            self.add_log(f"{event.get('level', 'info')}: {event.get('message', '')}")
        # progress and metric events change nothing here; the task relays them to the panel


def _pump(stream: Any, sink: queue.Queue, tag: str) -> None:
    """Copy lines of a pipe into a queue, then a ``None`` end marker."""
    for line in iter(stream.readline, ""):
        sink.put((tag, line))
    sink.put((tag, None))


class WorkerProcess:
    """One run of the worker; ``run`` blocks, so call it from a task or an algorithm.

    Args:
        argv: the command line (see :func:`build_command`).
        on_event: called with each event (from the calling thread).
        is_canceled: polled; when it returns True the worker gets SIGTERM.
    """

    def __init__(
        self,
        argv: list[str],
        on_event: Optional[EventHandler] = None,
        is_canceled: Optional[Callable[[], bool]] = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.on_event = on_event
        self.is_canceled = is_canceled or (lambda: False)
        self.process: Optional[subprocess.Popen] = None
        self.outcome = WorkerOutcome()

    def run(self) -> WorkerOutcome:
        """Start the worker, relay its events until it exits, and return the outcome."""
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                env=worker_env(),
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
        except OSError as exc:
            self.outcome.error = f"The worker {self.argv[0]} could not start ({exc})."
            return self.outcome
        lines: queue.Queue = queue.Queue()
        for stream, tag in ((self.process.stdout, "out"), (self.process.stderr, "err")):
            threading.Thread(target=_pump, args=(stream, lines, tag), daemon=True).start()
        self._relay(lines)
        self._finish()
        return self.outcome

    def _relay(self, lines: queue.Queue) -> None:
        """Handle lines until both pipes close, terminating the worker on cancel."""
        open_streams = 2
        while open_streams:
            if self.is_canceled() and not self.outcome.canceled:
                self.terminate()
            try:
                tag, line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif tag == "err":
                if line.strip():
                    self.outcome.add_log(line.rstrip())
            elif line.strip():
                self._handle(parse_line(line))

    def _handle(self, event: dict) -> None:
        """Record an event and pass it on."""
        self.outcome.absorb(event)
        if self.on_event is not None:
            self.on_event(event)

    def _finish(self) -> None:
        """Wait for the exit status and describe a crash without an error event."""
        assert self.process is not None
        self.outcome.returncode = self.process.wait()
        if self.outcome.returncode == EXIT_STATUSES["canceled"]:
            self.outcome.canceled = True
        if self.outcome.canceled:
            return
        if self.outcome.returncode != 0 and not self.outcome.error:
            tail = next((line for line in reversed(self.outcome.logs) if line.strip()), "")
            self.outcome.error = (
                f"The worker stopped with status {self.outcome.returncode}"
                + (f": {tail}" if tail else "")
                + "; see the KD-MSI log for details."
            )

    def terminate(self, wait_s: float = TERMINATE_WAIT_S) -> None:
        """Ask the worker to stop (SIGTERM: training saves its checkpoint) in the background.

        A worker still running ``wait_s`` seconds later is killed.
        """
        self.outcome.canceled = True
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        threading.Thread(target=_kill_later, args=(process, wait_s), daemon=True).start()


def _kill_later(process: subprocess.Popen, wait_s: float) -> None:
    """Kill a process that did not exit within ``wait_s`` seconds of SIGTERM."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return
        time.sleep(0.2)
    process.kill()


def run_command(
    command: str,
    options: dict[str, Any],
    on_event: Optional[EventHandler] = None,
    is_canceled: Optional[Callable[[], bool]] = None,
) -> WorkerOutcome:
    """Run one ``kdmsi`` subcommand in the worker and wait for it."""
    try:
        argv = build_command(command, options)
    except WorkerNotFound as exc:
        return WorkerOutcome(error=str(exc))
    return WorkerProcess(argv, on_event, is_canceled).run()


def system_python() -> str:
    """A base Python (QGIS's own where possible) to create the managed environment with.

    Inside QGIS ``sys.executable`` is QGIS itself; the interpreter is looked for under
    ``sys.prefix`` (:func:`kdmsi_qgis.install_plan.base_python_candidates`).
    """
    for candidate in base_python_candidates(
        platform.system(), Path(sys.prefix), Path(sys.base_prefix)
    ):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("python3") or shutil.which("python") or "python3"
