"""Siamese change activation map (CAM) classifiers and the teacher-student pair of KD-MSI.

A :class:`SiameseCAM` runs one backbone on both dates, fuses the last-stage features (``minus``:
B - A, ``abs``: |B - A|, ``cat``: [A, B] along channels) and maps them to one channel with a
bias-free 1x1 convolution: the change activation map (CAM logits at the output stride). Its image
logit is the spatial mean of the map.

:class:`TeacherStudent` holds two of them, each with its own backbone: the teacher (difference
fusion) learns from the image labels with binary cross-entropy; the student (``cat`` fusion by
default) learns only by distillation, ``kd_weight`` x MSE between the sigmoid of its map and the
teacher's CAM after ReLU, divided by its spatial maximum and multiplied by the image label
(detached, so the teacher gets no gradient from distillation). One optimizer updates both in the
same step; only the student is used at inference (see :mod:`core.msi`).

All models take images scaled to [0, 1] and normalize them with :func:`normalize_input`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import KdmsiError
from core.models.backbones import LogFn, build_backbone, expand_stats
from core.models.distillation import distillation_loss

FUSIONS: tuple[str, ...] = ("minus", "abs", "cat")
TEACHER_FUSIONS: tuple[str, ...] = ("minus", "abs")
HEAD_LR_MULTIPLIER = 10.0
DEFAULT_KD_WEIGHT = 10.0

BackboneFactory = Callable[[], nn.Module]


def normalize_input(x: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
    """Normalize images in [0, 1] with the backbone's ``input_mean`` and ``input_std``.

    The backbones of :mod:`core.models.backbones` already give one value per input band. When the
    statistics have another length than the ``C`` bands of ``x`` (a backbone from elsewhere), they
    are repeated cyclically (band ``i`` takes value ``i % len``), or averaged for a single band, the
    same rule the backbones use for their stems.

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


def image_logit(cam: torch.Tensor) -> torch.Tensor:
    """Image-level change logit: the spatial mean of a CAM.

    Args:
        cam: CAM logits ``[N, 1, h, w]``.

    Returns:
        Logits ``[N]``.
    """
    return cam.mean(dim=(2, 3)).reshape(-1)


def saturation_fraction(cam: torch.Tensor, tolerance: float = 1e-3) -> float:
    """Fraction of pixels whose sigmoid lies within ``tolerance`` of 0 or 1 (for monitoring).

    A student map near 1.0 has saturated: the sigmoid's gradient vanishes there and it stops
    learning.

    Args:
        cam: CAM logits, any shape.
        tolerance: distance from 0 or 1 counted as saturated.

    Returns:
        A fraction in [0, 1].
    """
    prob = torch.sigmoid(cam.detach().float())
    saturated = (prob < tolerance) | (prob > 1.0 - tolerance)
    return float(saturated.float().mean().item()) if saturated.numel() else 0.0


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
        if fusion not in FUSIONS:
            raise KdmsiError(f"Unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}.")
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


@dataclass(frozen=True)
class CamConfig:
    """What a teacher-student pair is made of (stored in model files).

    Attributes:
        backbone: backbone name (see :data:`core.models.backbones.BACKBONE_NAMES`).
        teacher_fusion: ``minus`` or ``abs``.
        student_fusion: ``minus``, ``abs`` or ``cat``.
        output_stride: stride of the CAMs, 16 or 8.
        in_channels: number of input bands.
        pretrained: start the backbones from ImageNet weights.
        kd_weight: weight of the distillation MSE.
    """

    backbone: str = "efficientnet-lite0"
    teacher_fusion: str = "minus"
    student_fusion: str = "cat"
    output_stride: int = 16
    in_channels: int = 3
    pretrained: bool = True
    kd_weight: float = DEFAULT_KD_WEIGHT


@dataclass
class LossBreakdown:
    """Losses of one teacher-student step.

    Attributes:
        teacher_bce: BCE of the teacher's image logit against the image label.
        distill: ``kd_weight`` x MSE of the student's sigmoid map against the teacher target.
        total: ``teacher_bce + distill`` (what to backpropagate).
        teacher_logit: the teacher's image logits ``[N]`` (detached, for monitoring).
        student_logit: the student's image logits ``[N]`` (detached, for monitoring).
        student_cam: the student's CAM logits (detached, e.g. for :func:`saturation_fraction`).
    """

    teacher_bce: torch.Tensor
    distill: torch.Tensor
    total: torch.Tensor
    teacher_logit: torch.Tensor
    student_logit: torch.Tensor
    student_cam: torch.Tensor

    def scalars(self) -> dict[str, float]:
        """Return the losses and the student's saturation as plain floats (for metric events)."""
        return {
            "loss": float(self.total.detach()),
            "teacher_bce": float(self.teacher_bce.detach()),
            "distill": float(self.distill.detach()),
            "student_saturation": saturation_fraction(self.student_cam),
        }


class CamPair(NamedTuple):
    """The CAM logits of teacher and student for one batch."""

    teacher: torch.Tensor
    student: torch.Tensor


class TeacherStudent(nn.Module):
    """The KD-MSI pair trained jointly: teacher by image labels, student by distillation.

    Attributes:
        config: what the pair is made of.
        teacher: the difference-fusion :class:`SiameseCAM`.
        student: the :class:`SiameseCAM` used at inference.
    """

    def __init__(
        self,
        config: CamConfig | None = None,
        factory: BackboneFactory | None = None,
        weights: Path | None = None,
        log: LogFn | None = None,
    ) -> None:
        """Build teacher and student, each with its own backbone.

        Args:
            config: the pair's description (defaults of :class:`CamConfig` when None).
            factory: builds one backbone per call; when None, :func:`build_backbone` is called
                with the config's backbone, output stride, bands and ``pretrained``.
            weights: backbone state-dict file passed to :func:`build_backbone` (both backbones).
            log: ``log(level, message)`` for backbone loading messages.

        Raises:
            KdmsiError: a teacher fusion other than ``minus``/``abs`` or an unknown fusion.
        """
        super().__init__()
        self.config = config if config is not None else CamConfig()
        if self.config.teacher_fusion not in TEACHER_FUSIONS:
            raise KdmsiError(
                f"The teacher fusion must be one of {', '.join(TEACHER_FUSIONS)}, "
                f"not {self.config.teacher_fusion!r}."
            )
        make = factory if factory is not None else self._default_factory(weights, log)
        self.teacher = SiameseCAM(make(), self.config.teacher_fusion)
        self.student = SiameseCAM(make(), self.config.student_fusion)

    def _default_factory(self, weights: Path | None, log: LogFn | None) -> BackboneFactory:
        cfg = self.config

        def make() -> nn.Module:
            return build_backbone(
                cfg.backbone,
                output_stride=cfg.output_stride,
                pretrained=cfg.pretrained,
                weights=weights,
                log=log,
                in_channels=cfg.in_channels,
            )

        return make

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> CamPair:
        """Compute both CAMs.

        Args:
            a: date A images ``[N, C, H, W]`` in [0, 1].
            b: date B images, same shape.

        Returns:
            Teacher and student CAM logits.
        """
        return CamPair(self.teacher(a, b), self.student(a, b))

    def losses(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> LossBreakdown:
        """Compute the training losses of one batch.

        Args:
            a: date A images ``[N, C, H, W]`` in [0, 1].
            b: date B images, same shape.
            y: image labels with ``N`` elements, 1 changed and 0 unchanged.

        Returns:
            The loss terms; backpropagate ``total``.
        """
        cams = self(a, b)
        labels = y.reshape(-1).to(cams.teacher.dtype)
        teacher_logit = image_logit(cams.teacher)
        bce = F.binary_cross_entropy_with_logits(teacher_logit, labels)
        distill = distillation_loss(cams.student, cams.teacher, labels, self.config.kd_weight)
        return LossBreakdown(
            teacher_bce=bce,
            distill=distill,
            total=bce + distill,
            teacher_logit=teacher_logit.detach(),
            student_logit=image_logit(cams.student).detach(),
            student_cam=cams.student.detach(),
        )

    def param_groups(
        self, lr: float, head_multiplier: float = HEAD_LR_MULTIPLIER
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups: ``head_multiplier`` x ``lr`` for the teacher's head only.

        The reference gives x10 to every new layer. The student's head, however, is trained
        through a sigmoid towards targets that are mostly 0 and sits on ``cat`` features with
        twice the channels: at x10 one SGD step drives its map to about -20 logits, where the
        sigmoid is flat, its gradient vanishes and the student never recovers (measured by the
        prototype). At x1 it trains. The teacher's head sees a plain BCE on a spatial mean, which
        tolerates x10. Each group carries a ``name`` and its base ``lr``.

        Args:
            lr: the base learning rate.
            head_multiplier: multiplier of the teacher head's learning rate.

        Returns:
            Groups ``teacher_backbone``, ``teacher_head``, ``student_backbone``,
            ``student_head`` (empty ones left out); every parameter appears exactly once.
        """
        teacher = self.teacher.param_groups()
        student = self.student.param_groups()
        groups = [
            ("teacher_backbone", teacher.backbone, lr),
            ("teacher_head", teacher.head, lr * head_multiplier),
            ("student_backbone", student.backbone, lr),
            ("student_head", student.head, lr),
        ]
        return [
            {"name": name, "params": params, "lr": group_lr}
            for name, params, group_lr in groups
            if params
        ]
