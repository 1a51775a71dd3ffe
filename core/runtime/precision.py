"""Choosing the arithmetic precision of training and inference: float32 or autocast to 16 bits.

``auto`` means float16 autocast on CUDA (with gradient scaling in training), bfloat16 autocast on
CPUs with native bfloat16 instructions (AVX512-BF16 or AMX, where oneDNN runs convolutions about
twice as fast as in float32; see BENCHMARKS.md), float32 elsewhere (older CPUs, where emulated
bfloat16 is slower, and Apple MPS).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from core.choices import CHOICES, check_choice
from core.errors import KdmsiError

PRECISIONS = CHOICES["precision"]


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN's own check)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type for ``precision`` on ``device``; None means plain float32.

    Raises:
        KdmsiError: for an unknown name or a combination the device cannot run.
    """
    check_choice(precision, "precision", "--precision")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_bf16():
            return torch.bfloat16
        return None
    if precision == "fp16" and device.type == "cpu":
        raise KdmsiError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU.")
    if precision == "bf16" and device.type == "mps":
        raise KdmsiError("--precision bf16 is not supported on Apple MPS; use fp16 or fp32.")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def describe(dtype: torch.dtype | None) -> str:
    """``float32``, ``bfloat16`` or ``float16``: for log lines and model descriptions."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


@contextlib.contextmanager
def autocasting(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device`` inside the block (nothing when ``dtype`` is None)."""
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        yield


def autocast_predictor(
    predictor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    dtype: torch.dtype | None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``predictor`` run under autocast to ``dtype``, returning float32 probabilities."""
    if dtype is None:
        return predictor

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with autocasting(device, dtype):
            return predictor(a, b).float()

    return run
