"""Rebuilding networks from a model file and turning them into tile predictors per method.

Methods: ``kdmsi`` (the student, MSI or single scale), ``cam`` (the teacher's normalised CAM,
the ablation without distillation) and ``kdmsi-refined`` (the refinement network).
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from core.choices import DEFAULTS, LearnedMethod, check_choice
from core.data.tilesets import TileSet
from core.detect.msi import MAX_PIXELS, cam_probability, msi
from core.detect.tiled import Predictor
from core.errors import KdmsiError
from core.models.backbones.registry import build_backbone
from core.models.cam import SiameseCAM
from core.models.inputs import to_tensor
from core.models.model_file import ModelInfo
from core.runtime.precision import autocast_predictor


def _backbone(info: ModelInfo, output_stride: int) -> nn.Module:
    """A randomly initialised backbone of the model's kind (its weights come from the file)."""
    return build_backbone(
        info.backbone, output_stride=output_stride, pretrained=False, in_channels=info.in_channels
    )


def build_network(info: ModelInfo, states: dict, network: str, path: Path) -> nn.Module:
    """Rebuild ``student``, ``teacher`` or ``refined`` and load its weights strictly.

    Raises:
        KdmsiError: when the file lacks that network or its weights do not fit the description.
    """
    if network not in states:
        raise KdmsiError(
            f"The model file {path} holds no {network} network; train or refine it first."
        )
    if network == "refined":
        from core.models.refinement_net import ChangeSegNet, SegNetConfig

        config = SegNetConfig(
            backbone=info.backbone,
            output_stride=info.refined_output_stride or info.output_stride,
            in_channels=info.in_channels,
            pretrained=False,
        )
        model: nn.Module = ChangeSegNet(config)
    else:
        fusion = info.student_fusion if network == "student" else info.teacher_fusion
        model = SiameseCAM(_backbone(info, info.output_stride), fusion)
    try:
        model.load_state_dict(states[network], strict=True)
    except RuntimeError as exc:
        raise KdmsiError(
            f"The {network} weights in {path} do not match its description ({info.backbone}); "
            "the file is damaged or was edited: train it again."
        ) from exc
    return model.eval()


def _conv_bn_pairs(model: nn.Module, example: tuple[torch.Tensor, ...]) -> list[tuple[str, str]]:
    """Names of (convolution, batch norm) pairs where the norm reads the convolution's output.

    Found by running ``example`` once with hooks: a batch norm whose input is the very tensor a
    convolution just returned follows that convolution.
    """
    names = {module: name for name, module in model.named_modules()}
    produced: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    keep: list[torch.Tensor] = []  # outputs stay alive so their ids stay unique

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            produced[id(output)] = names[module]
            keep.append(output)
        elif id(inputs[0]) in produced:
            pairs.append((produced.pop(id(inputs[0])), names[module]))

    kinds = (nn.Conv2d, nn.BatchNorm2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.inference_mode():
            model(*example)
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def fold_batchnorm(model: nn.Module, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """An evaluation-mode copy of ``model`` with each batch norm folded into its convolution.

    The folded copy computes the same function with fewer passes over memory (batch norm cost
    about a quarter of the student's CPU time). It is checked on ``example``: when its output
    differs from the original's by more than 1e-4 (a convolution whose output had another
    reader), the unfolded model is returned.

    Args:
        model: a network in evaluation mode.
        example: inputs of one forward pass (small ones suffice).

    Returns:
        The folded copy, or ``model`` itself when folding does not apply.
    """
    model = model.eval()
    pairs = _conv_bn_pairs(model, example)
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        parent, _, leaf = bn_name.rpartition(".")
        setattr(modules[parent] if parent else folded, leaf, nn.Identity())
    with torch.inference_mode():
        reference, result = model(*example), folded(*example)
    if not torch.allclose(reference, result, atol=1e-4, rtol=1e-4):
        return model
    return folded


def _example_pair(info: ModelInfo, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A small random before/after batch for tracing a network."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, info.in_channels, 64, 64)
    a, b = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)
    return a.to(device), b.to(device)


def inference_student(info: ModelInfo, states: dict, path: Path, device: torch.device) -> nn.Module:
    """The student ready for fast inference: batch norms folded, on ``device``, channels-last."""
    student = build_network(info, states, "student", path).to(device)
    student = fold_batchnorm(student, _example_pair(info, device))
    return student.to(memory_format=torch.channels_last)


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
) -> Predictor:
    """A function from before/after batches in [0, 1] to change probabilities.

    Args:
        method: ``kdmsi``, ``cam`` or ``kdmsi-refined``.
        info: the model description.
        states: the model file's state dicts.
        path: the model file (for messages).
        device: where the network runs.
        scales: MSI scales (``kdmsi``).
        flip: average horizontal flips (``kdmsi``).
        max_pixels: pixels per date of one forward pass (bounds memory; None: no bound).
        dtype: autocast type (:func:`core.runtime.precision.autocast_dtype`); None runs float32.

    Raises:
        KdmsiError: an unknown method or a network the file lacks.
    """
    check_choice(method, "learned_method", "method")
    if method == "kdmsi":
        student = inference_student(info, states, path, device)
        run = partial(msi, student, scales=tuple(scales), flip=flip, max_pixels=max_pixels)
        return autocast_predictor(run, device, dtype)
    if method == "cam":
        teacher = build_network(info, states, "teacher", path).to(device)
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
