"""Multi-process training on PyTorch's own engine (``torchrun``, DistributedDataParallel).

``torchrun --nproc_per_node N -m core train ...`` (or ``python -m torch.distributed.run``) starts
N copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. :func:`detect` reads them; :func:`start` joins the process group (``nccl`` on
CUDA, ``gloo`` on the CPU) and gives each rank its device (``cuda:LOCAL_RANK``). Without those
variables everything here is a no-op and training runs in one process.

Conventions (see docs/distributed.md): ``--batch-size`` is the global batch, split across the
ranks; rank 0 alone validates and writes the checkpoint, model, log and events; every rank agrees
at each step on cancel (SIGTERM) and divergence so that all of them stop at the same step.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from core.errors import KdmsiError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands among the ranks of one training.

    Attributes:
        rank: global rank, 0 to ``world_size - 1``.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and reports."""
        return self.rank == 0


SINGLE = DistEnv()


def detect(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read the rank from the standard variables set by ``torchrun`` (or SLURM wrappers).

    Args:
        environ: the environment (``os.environ`` when None).

    Returns:
        The ranks; :data:`SINGLE` when ``WORLD_SIZE`` is absent.

    Raises:
        KdmsiError: a variable that is not an integer or a rank outside the world.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return SINGLE
    try:
        values = {name: int(environ.get(name, "0")) for name in ENV_VARS}
    except ValueError as exc:
        shown = ", ".join(f"{n}={environ.get(n)!r}" for n in ENV_VARS)
        raise KdmsiError(
            f"The distributed environment ({shown}) is not made of integers; start kdmsi with "
            "torchrun or unset these variables."
        ) from exc
    env = DistEnv(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if env.world_size < 1 or not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise KdmsiError(
            f"RANK={env.rank} does not fit WORLD_SIZE={env.world_size}; start kdmsi with torchrun "
            "or unset these variables."
        )
    return env


def start(env: DistEnv, device: torch.device) -> torch.device:
    """Join the process group and return this rank's device.

    Args:
        env: from :func:`detect`.
        device: the device chosen for the run (``cuda`` becomes ``cuda:LOCAL_RANK``).

    Returns:
        The device this rank trains on.

    Raises:
        KdmsiError: ``LOCAL_RANK`` names a GPU that does not exist.
    """
    if not env.is_distributed:
        return device
    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise KdmsiError(
                f"LOCAL_RANK={env.local_rank} but this machine has {torch.cuda.device_count()} "
                "GPUs; start at most that many processes per node (--nproc_per_node)."
            )
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
    return device


def stop() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End a ``torchrun`` rank's process with ``code``, skipping C++ teardown.

    After a finished run and :func:`stop`, a gloo rank's interpreter teardown aborted in CI
    ("terminate called without an active exception", SIGABRT; twice in about 50 runs of the
    two-process tests). The fault handler showed one thread and no Python frame, so the abort
    happens in torch's C++ destructors after Python is done. Every file is written and closed
    by then: the output is flushed and the process ends without those destructors.
    """
    stop()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(code)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(*flags: bool) -> list[bool]:
    """For each flag, whether it is set on any rank (the local flags without a group).

    Args:
        flags: local conditions, e.g. canceled and diverged.

    Returns:
        The flags or-ed over all ranks.
    """
    if not _active():
        return [bool(f) for f in flags]
    tensor = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def sum_over_ranks(values: list[float]) -> list[float]:
    """Sum floats over all ranks (the values themselves without a group).

    Args:
        values: local sums (e.g. loss x tiles).

    Returns:
        The global sums.
    """
    if not _active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast(obj: Any) -> Any:
    """Send rank 0's picklable object to every rank (``obj`` itself without a group).

    Args:
        obj: the object on rank 0 (ignored elsewhere).

    Returns:
        Rank 0's object.
    """
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def shard(count: int, env: DistEnv) -> slice:
    """This rank's contiguous part of ``count`` items (sizes differ by at most one).

    Args:
        count: items in the global batch.
        env: the ranks.

    Returns:
        The slice of the global batch this rank takes.
    """
    bounds = np.linspace(0, count, env.world_size + 1).round().astype(int)
    return slice(int(bounds[env.rank]), int(bounds[env.rank + 1]))
