"""Choosing the torch device: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

from typing import Callable

import torch

from core.choices import check_choice
from core.errors import KdmsiError


def pick_device(name: str = "auto", log: Callable[[str, str], None] | None = None) -> torch.device:
    """Resolve ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` to an available device.

    Args:
        name: the requested device.
        log: receives one line saying which device runs and why.

    Raises:
        KdmsiError: when a GPU is asked for explicitly and none is available.
    """
    log = log or (lambda level, message: None)
    check_choice(name, "device", "--device")
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
            log("info", f"Using CUDA GPU {torch.cuda.get_device_name(0)}.")
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = torch.device("mps")
            log("info", "Using the Apple MPS GPU.")
        else:
            device = torch.device("cpu")
            log("info", f"No GPU found; using the CPU with {torch.get_num_threads()} threads.")
        return device
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KdmsiError(
            f"--device {name} was asked for but this torch ({torch.__version__}) sees no CUDA GPU; "
            "use --device auto or cpu."
        )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise KdmsiError(
            "--device mps was asked for but no Apple GPU is available; use --device cpu."
        )
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise KdmsiError(f"--device {name} is unknown; use auto, cpu, cuda or mps.")
    log("info", f"Using device {name}.")
    return torch.device(name)
