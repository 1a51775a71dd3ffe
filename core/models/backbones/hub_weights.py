"""ImageNet weights from the torch hub cache, or downloaded into it where a network exists."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from core.models.backbones.base import LogFn, WeightSource, info, warn


def cached_weights(name: str, url: str) -> Path | None:
    """Find ImageNet weights of ``name`` in the torch hub cache.

    Args:
        name: ``resnet18`` or ``resnet50``.
        url: the official weights, whose file name is preferred.

    Returns:
        The official file when present, else any ``<name>-*.pth`` there, else None.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    official = folder / url.rsplit("/", 1)[-1]
    if official.is_file():
        return official
    found = sorted(folder.glob(f"{name}-*.pth"))
    return found[0] if found else None


def download_weights(name: str, url: str, log: LogFn | None) -> WeightSource | None:
    """Download the official weights into the torch hub cache.

    Args:
        name: ``resnet18`` or ``resnet50``.
        url: the official weights.
        log: ``log(level, message)`` or None.

    Returns:
        The weights, or None (after a loud warning) when the download fails.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    info(log, f"{name}: downloading ImageNet weights from {url}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries --jsonl events only
            state = torch.hub.load_state_dict_from_url(
                url, map_location="cpu", progress=False, check_hash=True, weights_only=True
            )
    except Exception as exc:  # no network, proxy, hash mismatch, full disk...
        warn(
            log,
            f"WARNING: {name} starts from RANDOM weights because its ImageNet weights were not "
            f"found in {folder} and the download of {url} failed ({type(exc).__name__}: {exc}); "
            f"results will be poor: copy that file into {folder} or pass a weights file.",
        )
        return None
    return WeightSource(dict(state), folder / url.rsplit("/", 1)[-1])
