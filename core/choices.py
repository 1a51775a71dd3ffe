"""The closed sets of string options (typed as ``Literal``) and the defaults, declared once.

Both come from ``core/defaults.json``, which the QGIS plugin reads as well (it never imports
``core``), so the panel, the Processing algorithms, the command line and the parameter dataclasses
share one declaration. :func:`check_choice` is the one place where a string option is validated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import KdmsiError

DEFAULTS_FILE = Path(__file__).with_name("defaults.json")

Method = Literal["auto", "kdmsi", "kdmsi-refined", "cam", "cva", "kdmsi-cva"]
LearnedMethod = Literal["kdmsi", "kdmsi-cva", "cam", "kdmsi-refined"]
Engine = Literal["auto", "torch", "onnx"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = str  # "auto", "cpu", "cuda", "cuda:N" or "mps" (see DEVICE_KINDS)
Backbone = Literal[
    "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "resnet18", "resnet50"
]
Fusion = Literal["minus", "abs", "cat"]
TeacherFusion = Literal["minus", "abs"]
Strategy = Literal["random", "suggest", "suggest-peaks"]  # the benchmark's simulated users
STRATEGIES: tuple[str, ...] = ("random", "suggest", "suggest-peaks")


def _read() -> dict:
    return json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))


_FILE = _read()
CHOICES: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _FILE["choices"].items()}
LEARNED_METHODS: tuple[str, ...] = ("kdmsi", "kdmsi-cva", "cam", "kdmsi-refined")
DEVICE_KINDS: tuple[str, ...] = CHOICES["device"]


@dataclass(frozen=True)
class Defaults:
    """Default values shared by the command line, the parameter dataclasses and the plugin."""

    tile: int
    epochs: int
    min_steps: int
    batch_size: int
    lr: float
    backbone: Backbone
    output_stride: int
    teacher_fusion: TeacherFusion
    student_fusion: Fusion
    val_fraction: float
    scales: tuple[float, ...]
    method: Method
    engine: Engine
    precision: Precision
    device: Device
    min_pixels: int
    peak_ratio: float
    affinity_rounds: int
    affinity_rounds_aerial: int


DEFAULTS = Defaults(**{**_FILE["defaults"], "scales": tuple(_FILE["defaults"]["scales"])})


def check_choice(value: str, kind: str, option: str | None = None) -> str:
    """Return ``value`` when it is one of the ``kind`` choices, else say what to use.

    Args:
        value: the user's string.
        kind: a key of :data:`CHOICES` (``method``, ``engine``, ``precision``, ``device``,
            ``backbone``, ``fusion``, ``teacher_fusion``) or ``learned_method``.
        option: how the user gave it (``--precision``); defaults to the kind's name.

    Raises:
        KdmsiError: for a value outside the set (``cuda:N`` counts as a device).
    """
    allowed = LEARNED_METHODS if kind == "learned_method" else CHOICES[kind]
    if value in allowed or (kind == "device" and _is_cuda_index(value)):
        return value
    name = option or kind.replace("_", " ")
    raise KdmsiError(f"{name} {value!r} is unknown; use one of {', '.join(allowed)}.")


def _is_cuda_index(value: str) -> bool:
    kind, _, index = value.partition(":")
    return kind == "cuda" and index.isdigit()
