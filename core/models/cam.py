"""Siamese change activation map (CAM) classifiers: one backbone on both dates, a 1x1 head.

A :class:`SiameseCAM` runs one backbone on both dates, fuses the last-stage features (``minus``:
B - A, ``abs``: |B - A|, ``cat``: [A, B] along channels) and maps them to one channel with a
bias-free 1x1 convolution: the change activation map (CAM logits at the output stride). Its image
logit is the spatial mean of the map.

KD-MSI's teacher and student are two of them (:mod:`core.models.teacher_student`).

All models take images scaled to [0, 1] and normalize them with :func:`normalize_input`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from core.choices import CHOICES, check_choice
from core.models.backbones.base import expand_stats
from core.models.cam_outputs import CamPair, LossBreakdown, image_logit, saturation_fraction

__all__ = [
    "CamPair",
    "LossBreakdown",
    "ParamSplit",
    "SiameseCAM",
    "fuse",
    "image_logit",
    "normalize_input",
    "saturation_fraction",
]

FUSIONS: tuple[str, ...] = CHOICES["fusion"]
TEACHER_FUSIONS: tuple[str, ...] = CHOICES["teacher_fusion"]
HEAD_LR_MULTIPLIER = 10.0
DEFAULT_KD_WEIGHT = 10.0

BackboneFactory = Callable[[], nn.Module]


def normalize_input(x: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
    """Normalize images in [0, 1] with the backbone's ``input_mean`` and ``input_std``.

    The backbones of :mod:`core.models.backbones.base` already give one value per input band.
    When the statistics have another length than the ``C`` bands of ``x`` (a backbone from
    elsewhere), they are repeated cyclically (band ``i`` takes value ``i % len``), or averaged for a
    single band, the same rule the backbones use for their stems.

    Args:
        x: images ``[N, C, H, W]``, float, in [0, 1].
        backbone: a module with ``input_mean`` and ``input_std`` sequences; without them ``x`` is
            returned unchanged.

    Returns:
        ``(x - mean) / std`` per channel.
    """
    mean = getattr(backbone, "input_mean", None)
    std = getattr(backbone, "input_std", None)
    if mean is None or std is None:
        return x
    channels = x.shape[1]
    shape = (1, channels, 1, 1)
    if len(mean) != channels:
        mean, std = expand_stats(mean, channels), expand_stats(std, channels)
    mean_t = torch.tensor(list(mean), dtype=x.dtype, device=x.device)
    std_t = torch.tensor(list(std), dtype=x.dtype, device=x.device)
    return (x - mean_t.view(shape)) / std_t.view(shape)


def fuse(fa: torch.Tensor, fb: torch.Tensor, fusion: str) -> torch.Tensor:
    """Fuse the features of the two dates.

    Args:
        fa: features of date A ``[N, C, h, w]``.
        fb: features of date B, same shape.
        fusion: ``minus`` (B - A), ``abs`` (|B - A|) or ``cat`` ([A, B] along channels).

    Returns:
        The fused features (``2C`` channels for ``cat``, else ``C``).
    """
    if fusion == "minus":
        return fb - fa
    if fusion == "abs":
        return (fb - fa).abs()
    return torch.cat([fa, fb], dim=1)


class ParamSplit(NamedTuple):
    """Parameters of a model split into the pretrained backbone and the new layers.

    Attributes:
        backbone: parameters of the backbone.
        head: parameters of the layers added on top (trained from scratch).
    """

    backbone: list[nn.Parameter]
    head: list[nn.Parameter]


class SiameseCAM(nn.Module):
    """Siamese CAM change classifier: shared backbone, feature fusion, bias-free 1x1 head.

    Both dates go through the backbone in one pass (concatenated along the batch), so in training
    mode batch normalization pools the statistics of both dates, as at inference with running
    statistics.

    Attributes:
        backbone: the shared backbone (``forward(x).high`` at ``output_stride``).
        fusion: ``minus``, ``abs`` or ``cat``.
        head: the 1x1 convolution to one channel, without bias.
    """

    def __init__(self, backbone: nn.Module, fusion: str = "minus") -> None:
        """Build the classifier on a backbone.

        Args:
            backbone: a module with ``high_channels`` whose ``forward(x)`` returns an object with
                ``high`` features; ``input_mean``/``input_std`` are used when present.
            fusion: ``minus``, ``abs`` or ``cat``.

        Raises:
            KdmsiError: unknown fusion.
        """
        super().__init__()
        check_choice(fusion, "fusion")
        self.backbone = backbone
        self.fusion = fusion
        channels = int(backbone.high_channels) * (2 if fusion == "cat" else 1)
        self.head = nn.Conv2d(channels, 1, kernel_size=1, bias=False)

    @property
    def output_stride(self) -> int:
        """Stride of the CAM relative to the input (the backbone's output stride)."""
        return int(getattr(self.backbone, "output_stride", 16))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Compute the change activation map.

        Args:
            a: date A images ``[N, C, H, W]`` in [0, 1].
            b: date B images, same shape.

        Returns:
            CAM logits ``[N, 1, h, w]`` at the output stride.
        """
        x = normalize_input(torch.cat([a, b], dim=0), self.backbone)
        fa, fb = self.backbone(x).high.chunk(2, dim=0)
        return self.head(fuse(fa, fb, self.fusion))

    def cam_after_stages(self, features: torch.Tensor, start: int) -> torch.Tensor:
        """The CAM from the output of the backbone's first ``start`` stages.

        Args:
            features: ``backbone.forward_stages(normalized [A; B], start)``, both dates
                concatenated along the batch.
            start: number of stages already run.

        Returns:
            CAM logits ``[N, 1, h, w]``.
        """
        fa, fb = self.backbone.forward_high(features, start).chunk(2, dim=0)
        return self.head(fuse(fa, fb, self.fusion))

    @staticmethod
    def image_logit(cam: torch.Tensor) -> torch.Tensor:
        """Image-level logit ``[N]``: the spatial mean of ``cam`` (see :func:`image_logit`)."""
        return image_logit(cam)

    def param_groups(self) -> ParamSplit:
        """Split the parameters into backbone and new layers (the 1x1 head).

        Returns:
            The split; every parameter appears exactly once.
        """
        return ParamSplit(list(self.backbone.parameters()), list(self.head.parameters()))
