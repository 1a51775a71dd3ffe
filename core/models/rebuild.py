"""Rebuilding the networks a model file describes, with their weights loaded strictly."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from core.errors import KdmsiError
from core.models.backbones.registry import build_backbone
from core.models.cam import SiameseCAM
from core.models.model_file import ModelInfo
from core.models.refinement_net import ChangeSegNet, SegNetConfig


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
