"""The one place a learned method becomes a predictor: before/after batches to probabilities.

Methods: ``kdmsi`` (the student, MSI or single scale), ``kdmsi-cva`` (the student's map combined
with change vector analysis, :mod:`core.detect.fusion`), ``cam`` (the teacher's normalised CAM,
the ablation without distillation) and ``kdmsi-refined`` (the refinement network).
:func:`make_predictor` serves ``kdmsi detect``, the thresholds chosen at the end of training, the
refinement's pseudo labels, ``kdmsi suggest`` and the benchmark alike, so every reported number is
measured on the graph users run.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from core.choices import DEFAULTS, LearnedMethod, check_choice
from core.data.magnitude import Standardisation
from core.data.tilesets import TileSet
from core.detect.folding import inference_network
from core.detect.fusion import fused_predictor
from core.detect.msi import MAX_PIXELS, cam_probability, msi
from core.detect.tiled import Predictor
from core.models.inputs import to_tensor
from core.models.model_file import ModelInfo
from core.models.rebuild import build_network
from core.runtime.precision import autocast_predictor


def _in_parts(predictor: Predictor, max_pixels: int | None) -> Predictor:
    """Run ``predictor`` on parts of at most ``max_pixels`` pixels per date."""

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        step = a.shape[0] if not max_pixels else max(1, max_pixels // (a.shape[-2] * a.shape[-1]))
        if step >= a.shape[0]:
            return predictor(a, b)
        parts = [predictor(a[i : i + step], b[i : i + step]) for i in range(0, len(a), step)]
        return torch.cat(parts)

    return run


def make_predictor(
    method: LearnedMethod,
    info: ModelInfo,
    states: dict,
    path: Path,
    device: torch.device,
    scales: Sequence[float] = DEFAULTS.scales,
    flip: bool = True,
    max_pixels: int | None = MAX_PIXELS,
    dtype: torch.dtype | None = None,
    cva_threshold: float | None = None,
    cva_standard: Standardisation | None = None,
) -> Predictor:
    """A function from before/after batches in [0, 1] to change probabilities.

    Args:
        method: ``kdmsi``, ``kdmsi-cva``, ``cam`` or ``kdmsi-refined``.
        info: the model description.
        states: the model file's state dicts.
        path: the model file (for messages).
        device: where the network runs.
        scales: MSI scales (``kdmsi``).
        flip: average horizontal flips (``kdmsi``).
        max_pixels: pixels per date of one forward pass (bounds memory; None: no bound).
        dtype: autocast type (:func:`core.runtime.precision.autocast_dtype`); None runs float32.
        cva_threshold: the pair's CVA threshold (``kdmsi-cva`` only; required there).
        cva_standard: the one-band pair's standardisation; ``cva_threshold`` is then the
            standardised magnitude's (``kdmsi-cva`` only).

    Raises:
        KdmsiError: an unknown method or a network the file lacks.
    """
    check_choice(method, "learned_method", "method")
    if method in ("kdmsi", "kdmsi-cva"):
        student = inference_network(info, states, "student", path, device)
        run = partial(msi, student, scales=tuple(scales), flip=flip, max_pixels=max_pixels)
        predictor = autocast_predictor(run, device, dtype)
        if method == "kdmsi":
            return predictor
        if cva_threshold is None:
            raise ValueError("kdmsi-cva needs the pair's CVA threshold")
        return fused_predictor(
            predictor, cva_threshold, info.cva_window, info.affinity_rounds, cva_standard,
            info.field_for(tuple(scales)),
        )  # fmt: skip
    if method == "cam":
        teacher = inference_network(info, states, "teacher", path, device)
        run = _in_parts(partial(cam_probability, teacher), max_pixels)
        return autocast_predictor(run, device, dtype)
    if method == "kdmsi-refined":
        refined = build_network(info, states, "refined", path).to(device)
        return autocast_predictor(_in_parts(refined.predict, max_pixels), device, dtype)
    raise AssertionError(method)  # unreachable: check_choice above


def onnx_predictor(
    student: nn.Module,
    scales: Sequence[float] = DEFAULTS.scales,
    flip: bool = True,
    max_pixels: int | None = MAX_PIXELS,
) -> Predictor:
    """MSI (or single scale) of an :class:`core.detect.onnx.OnnxStudent`."""
    return partial(msi, student, scales=tuple(scales), flip=flip, max_pixels=max_pixels)


@torch.inference_mode()
def predict_tiles(
    predictor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tiles: TileSet,
    device: torch.device,
    batch_size: int = 8,
) -> np.ndarray:
    """Probabilities ``[N, T, T]`` of a predictor over in-memory tiles."""
    out = []
    for start in range(0, len(tiles), batch_size):
        a = to_tensor(tiles.before[start : start + batch_size], device)
        b = to_tensor(tiles.after[start : start + batch_size], device)
        out.append(predictor(a, b)[:, 0].float().cpu().numpy())
    return (
        np.concatenate(out) if out else np.zeros((0, tiles.tile_size, tiles.tile_size), np.float32)
    )
