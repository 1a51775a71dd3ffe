"""Rebuilding networks from a model file and turning them into tile predictors per method.

Methods: ``kdmsi`` (the student, MSI or single scale), ``cam`` (the teacher's normalised CAM,
the ablation without distillation) and ``kdmsi-refined`` (the refinement network).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from core.errors import KdmsiError
from core.inference import Predictor
from core.modelfile import ModelInfo
from core.models.backbones import build_backbone
from core.models.cam import SiameseCAM
from core.msi import cam_probability, msi

LEARNED_METHODS = ("kdmsi", "cam", "kdmsi-refined")


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
        from core.models.segnet import ChangeSegNet, SegNetConfig

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


def make_predictor(
    method: str,
    info: ModelInfo,
    states: dict,
    path: Path,
    device: torch.device,
    scales: Sequence[float] = (0.5, 1.0, 1.25, 2.0),
    flip: bool = True,
) -> Predictor:
    """A function from before/after batches in [0, 1] to change probabilities."""
    if method == "kdmsi":
        student = build_network(info, states, "student", path).to(device)
        student = student.to(memory_format=torch.channels_last)
        return partial(msi, student, scales=tuple(scales), flip=flip)
    if method == "cam":
        teacher = build_network(info, states, "teacher", path).to(device)
        return partial(cam_probability, teacher)
    if method == "kdmsi-refined":
        refined = build_network(info, states, "refined", path).to(device)
        return refined.predict
    raise KdmsiError(f"Unknown method {method!r}; choose one of {', '.join(LEARNED_METHODS)}.")
