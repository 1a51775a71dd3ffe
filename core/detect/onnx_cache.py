"""Keep the ONNX export of each model file, so that detect exports a model once, not per run.

``detect --engine auto`` runs a ``.pt`` model's student with onnxruntime on the CPU; exporting it
takes 1-2 s, as long as detecting a small area. The export is kept in the user's cache folder
(``$KDMSI_CACHE_DIR``, else ``$XDG_CACHE_HOME/kdmsi``, else ``~/.cache/kdmsi``; never the
plugin's folder) under a name made of the model file's SHA-256 and the torch and onnx versions
that export it, so a retrained model or a new torch never reuses a stale export. The newest
:data:`KEEP` exports are kept. Where the cache folder cannot be written, the export goes to the
run's scratch folder as before.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import uuid
from pathlib import Path

CACHE_ENV = "KDMSI_CACHE_DIR"
KEEP = 8


def cache_folder() -> Path:
    """The folder ONNX exports are kept in (see the module notes)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kdmsi" / "onnx"


def export_name(model_path: Path) -> str:
    """The cache name of a model file's export: its content and the exporting versions."""
    from core.detect.onnx import OPSET

    digest = hashlib.sha256()
    with Path(model_path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    for package in ("torch", "onnx"):
        digest.update(f"{package}={importlib.metadata.version(package)};".encode())
    digest.update(f"opset={OPSET}".encode())
    return f"student-{digest.hexdigest()[:32]}.onnx"


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used exports."""
    exports = sorted(folder.glob("student-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in exports[keep:]:
        old.unlink(missing_ok=True)


def onnx_export_for(model_path: Path, scratch: Path) -> tuple[Path, bool]:
    """The ONNX export of ``model_path``'s student: the cached one, or a new one.

    Args:
        model_path: a ``.pt`` model file.
        scratch: the run's temporary folder, used when the cache folder cannot be written.

    Returns:
        The export's path and whether it came from the cache.
    """
    from core.detect.onnx import export_onnx

    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        cached = folder / export_name(model_path)
        if cached.is_file():
            os.utime(cached)  # most recently used: kept by the next prune
            return cached, True
        partial = folder / f".{cached.stem}-{uuid.uuid4().hex[:8]}.onnx"
        try:
            export_onnx(model_path, partial)
            partial.replace(cached)  # atomic: a parallel run sees the whole file or none
        finally:
            for leftover in folder.glob(f"{partial.name}*"):  # the export's own partial file
                leftover.unlink(missing_ok=True)
        _prune(folder, KEEP)
        return cached, False
    except OSError:
        return export_onnx(model_path, scratch / "student.onnx", overwrite=True), False


def forget(path: Path) -> None:
    """Remove a cached export that turned out unreadable (it is exported again next time)."""
    if path.parent == cache_folder():
        path.unlink(missing_ok=True)
