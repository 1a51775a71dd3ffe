"""Checks on where outputs go, made before long work starts: a writable folder, enough free disk.

``os.access`` is not enough to know whether a folder can be written (root passes it on read-only
mounts, ACLs and network shares answer it wrongly), so :func:`check_writable` creates and removes
a small probe file. Free space is compared with an estimate of what the command will write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core.errors import KdmsiError

# Room kept free beyond the estimate, so a nearly full disk is refused before it fills.
MARGIN_BYTES = 16 * 2**20


def human_size(size: float) -> str:
    """``1536`` -> ``"1.5 KB"``: a byte count for messages."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - the loop always returns


def existing_folder(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (the one a new folder goes into)."""
    path = Path(path).absolute()
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, what: str) -> None:
    """Raise when no file can be created in ``folder``.

    Args:
        folder: an existing folder.
        what: the output, for the message (e.g. ``the output /x/prob.tif``).

    Raises:
        KdmsiError: naming the folder and what to do.
    """
    try:
        handle, probe = tempfile.mkstemp(prefix=".kdmsi-probe-", dir=folder)
    except OSError as exc:
        raise KdmsiError(
            f"The folder {folder} of {what} is not writable ({exc.strerror or exc}); "
            "choose another output folder or fix its permissions."
        ) from exc
    os.close(handle)
    Path(probe).unlink(missing_ok=True)


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise when ``folder``'s disk has less than ``needed`` bytes (plus a margin) free.

    Args:
        folder: an existing folder on the disk that will receive the output.
        needed: estimated bytes the output takes.
        what: the output, for the message.

    Raises:
        KdmsiError: naming the folder, the space needed and the space free.
    """
    free = shutil.disk_usage(folder).free
    if free < needed + MARGIN_BYTES:
        raise KdmsiError(
            f"The disk of {folder} has {human_size(free)} free but {what} needs about "
            f"{human_size(needed)}; free some space or choose another output folder."
        )


def check_run_folder(run_dir: Path, needed: int) -> None:
    """Check before training that the run folder can be made, written and has room.

    Args:
        run_dir: the run folder (``train --out``); it may not exist yet.
        needed: estimated bytes of model, checkpoint and their temporary copies.

    Raises:
        KdmsiError: when it is a file, its folder is not writable or the disk is too full.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise KdmsiError(f"The run folder {run_dir} is a file; give a folder for --out.")
    folder = existing_folder(run_dir)
    what = f"the run folder {run_dir}"
    check_writable(folder, what)
    check_free_space(folder, needed, what)


# Values in the teacher + student state dicts of each backbone (3 bands; counted with
# TeacherStudent(CamConfig(backbone=..., pretrained=False))).
STATE_VALUES = {"efficientnet-lite0": 6_829_986, "resnet18": 22_373_800, "resnet50": 47_128_554}


def training_bytes(backbone: str) -> int:
    """Disk a training run needs at its peak: float32 networks six times over plus logs.

    The model file (1x) and its temporary copy while it is replaced (1x), the checkpoint with the
    optimizer's momentum (2x) and its temporary copy (2x); 16 MB for the log and the curves.
    """
    values = STATE_VALUES.get(backbone, max(STATE_VALUES.values()))
    return 6 * 4 * values + 16 * 2**20
