"""The worker's Python environment: "Install dependencies" and "Check worker".

The managed environment lives in the QGIS profile folder (never in the plugin folder) and is
created only when the user asks, never at import time.
"""

from __future__ import annotations

import configparser
import json
import platform
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from kdmsi_qgis.install_plan import Host, InstallPlan, plan_install
from kdmsi_qgis.paths import metadata_path, venv_python
from kdmsi_qgis.worker import (
    WorkerNotFound,
    find_python,
    managed_venv_dir,
    system_python,
    worker_env,
)

PROBE = (
    "import json, platform, sys\n"
    "info = {'python': platform.python_version()}\n"
    "try:\n"
    "    import torch\n"
    "    info['torch'] = torch.__version__\n"
    "    info['cuda'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''\n"
    "except Exception as exc:\n"
    "    info['torch'] = ''\n"
    "    info['problem'] = repr(exc)\n"
    "try:\n"
    "    import core\n"
    "    info['core'] = core.__version__\n"
    "except Exception as exc:\n"
    "    info['core'] = ''\n"
    "print(json.dumps(info))\n"
)


def nvidia_driver(timeout: float = 10.0) -> Optional[str]:
    """The NVIDIA driver version ``nvidia-smi`` reports, None without one."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def detect_host(wheel_dir: Optional[Path] = None) -> Host:
    """This machine's facts for :func:`kdmsi_qgis.install_plan.plan_install`.

    numpy is QGIS's own (the one its GDAL was built against), read in this process.
    """
    try:
        import numpy

        numpy_version: Optional[str] = numpy.__version__
    except ImportError:
        numpy_version = None
    return Host(platform.system(), platform.machine(), nvidia_driver(), numpy_version, wheel_dir)


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether ``url`` answers (pip's proxy settings come from the environment, as here)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def usable_plan(host: Host, log: Callable[[str], None]) -> InstallPlan:
    """The plan for ``host``; without its extra package index (unreachable), the default one."""
    plan = plan_install(host)
    extra = dict(zip(plan.index_args[::2], plan.index_args[1::2])).get("--extra-index-url")
    if extra and not reachable(extra):
        log(
            f"The PyTorch package index {extra} cannot be reached from this machine; torch comes "
            "from pip's default index instead (on Windows that build runs on the CPU only)."
        )
        plan = replace(plan, index_args=())
    log(f"Installing {plan.reason}")
    return plan


def install_commands(
    plan: InstallPlan, venv: Optional[Path] = None, base: Optional[str] = None
) -> list[list[str]]:
    """The commands that create the managed environment and install ``plan``.

    The plan's optional packages, if any, are the last command.

    The plan's constraints are written beside the environment (in the QGIS profile folder).
    """
    venv = venv or managed_venv_dir()
    python = str(venv_python(venv))
    constraints = venv.parent / "constraints.txt"
    constraints.parent.mkdir(parents=True, exist_ok=True)
    constraints.write_text("\n".join(plan.constraints) + "\n", encoding="utf-8")
    commands = [[base or system_python(), "-m", "venv", "--system-site-packages", str(venv)]]
    if "--no-index" not in plan.index_args:
        commands.append([python, "-m", "pip", "install", "--upgrade", "pip"])
    commands.append(plan.pip_command(python, constraints))
    if plan.optional:  # last, so that its failure leaves a complete install
        commands.append(plan.pip_command(python, constraints, plan.optional))
    return commands


def describe_worker(timeout: float = 120.0) -> str:
    """One line on the worker: its Python, torch and GPU (asked in a subprocess)."""
    try:
        python, source = find_python()
    except WorkerNotFound as exc:
        return str(exc)
    try:
        done = subprocess.run(
            [python, "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=worker_env(),
            check=False,
        )
        info = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return f"The worker {python} ({source}) did not answer; check it or reinstall."
    if not info.get("torch"):
        return f"{python} ({source}) has no torch; run Install dependencies."
    gpu = f"CUDA: {info['cuda']}" if info.get("cuda") else "no CUDA GPU (CPU)"
    return f"Python {info['python']} ({source}), torch {info['torch']}, {gpu}"


def probe_worker(show: Callable[[str], None]) -> QgsTask:
    """Start a task that asks the worker for its Python, torch and GPU and ``show``s the line."""
    task = QgsTask.fromFunction("KD-MSI: check worker", lambda _task: describe_worker())
    task.taskCompleted.connect(lambda: show(str(task.returned_values)))
    QgsApplication.taskManager().addTask(task)
    return task


class InstallTask(QgsTask):
    """Create the managed environment and pip-install the pinned packages, with progress.

    Signals:
        line: each output line of venv and pip (main thread).
    """

    line = pyqtSignal(str)

    def __init__(self, venv: Optional[Path] = None, wheel_dir: Optional[Path] = None) -> None:
        super().__init__("KD-MSI: install dependencies", QgsTask.CanCancel)
        self.venv = venv or managed_venv_dir()
        self.wheel_dir = wheel_dir
        self.commands: list[list[str]] = []
        self.plan: Optional[InstallPlan] = None
        self.error = ""

    def run(self) -> bool:
        """Choose the build for this machine, then run each command (rough progress).

        The optional CPU engine comes last; when it cannot be installed the log says so and
        the install still succeeds (detection then runs with torch).
        """
        self.venv.parent.mkdir(parents=True, exist_ok=True)
        self.plan = usable_plan(detect_host(self.wheel_dir), self.line.emit)
        self.commands = install_commands(self.plan, self.venv)
        last = len(self.commands) - 1
        for index, argv in enumerate(self.commands):
            if not self._run_one(argv, index):
                if not (self.plan.optional and index == last) or self.isCanceled():
                    return False
                self.error = ""
                self.line.emit(
                    f"The faster CPU engine ({', '.join(self.plan.optional)}) could not be "
                    "installed; detection runs with torch instead, the same map about 1.3 times "
                    "slower. Everything else is installed."
                )
        return True

    def _run_one(self, argv: list[str], index: int) -> bool:
        """One command; False on failure or cancel."""
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        seen = 0
        assert process.stdout is not None
        for text in process.stdout:
            seen += 1
            self.line.emit(text.rstrip())
            share = 100.0 / len(self.commands)
            self.setProgress(share * index + share * min(seen / 60.0, 0.95))
            if self.isCanceled():
                process.terminate()
        if process.wait() != 0:
            self.error = f"`{' '.join(argv)}` failed (status {process.returncode}); see the log."
            return False
        return not self.isCanceled()

    def finished(self, result: bool) -> None:
        """Report the result in the QGIS log and message bar."""
        from qgis.utils import iface

        from kdmsi_qgis.tasks import log_message

        build = f" ({self.plan.build} build of torch)" if self.plan is not None else ""
        message = (
            f"KD-MSI dependencies installed in {self.venv}{build}."
            if result
            else self.error or "Installation canceled."
        )
        log_message(message, Qgis.Success if result else Qgis.Critical)
        if iface is not None:
            level = Qgis.Success if result else Qgis.Critical
            iface.messageBar().pushMessage("KD-MSI", message, level, 15)


def diagnostics(worker_line: str, log_text: str) -> str:
    """What to paste into a bug report: versions, the worker and the panel's log.

    Args:
        worker_line: the panel's worker line (what Check found, or "worker not checked").
        log_text: the panel's log.
    """
    meta = configparser.ConfigParser()
    meta.read(metadata_path(), encoding="utf-8")
    version = meta.get("general", "version", fallback="unknown")
    try:
        python, source = find_python()
        worker = f"{python} ({source})"
    except WorkerNotFound as exc:
        worker = str(exc)
    lines = [
        f"KD-MSI plugin {version}, QGIS {Qgis.version()}, {platform.platform()}",
        f"QGIS Python {sys.version.split()[0]}; worker Python: {worker}",
        f"Worker check: {worker_line}",
        "Log:",
        log_text,
    ]
    return "\n".join(lines)
