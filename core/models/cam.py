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
same step; only the student is used at inference (see :mod:`core.detect.msi`).

All models take images scaled to [0, 1] and normalize them with :func:`normalize_input`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.choices import CHOICES, check_choice
from core.errors import KdmsiError
from core.models.backbones.base import LogFn, expand_stats
from core.models.backbones.registry import build_backbone
from core.models.cam_outputs import CamPair, LossBreakdown, image_logit, saturation_fraction
from core.models.distillation import distillation_loss

__all__ = [
    "CamConfig",
    "CamPair",
    "LossBreakdown",
    "ParamSplit",
    "SiameseCAM",
    "TeacherStudent",
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


@dataclass(frozen=True)
class CamConfig:
    """What a teacher-student pair is made of (stored in model files).

    Attributes:
        backbone: backbone name (see :data:`core.models.backbones.base.BACKBONE_NAMES`).
        teacher_fusion: ``minus`` or ``abs``.
        student_fusion: ``minus``, ``abs`` or ``cat``.
        output_stride: stride of the CAMs, 16 or 8.
        in_channels: number of input bands.
        pretrained: start the backbones from ImageNet weights.
        kd_weight: weight of the distillation MSE.
        frozen_stages: early backbone stages kept fixed (stage 0 is the stem; see
            :class:`TeacherStudent`); 0 trains everything.
        freeze_bn: keep every batch norm in eval mode (running statistics, affine still trained).
    """

    backbone: str = "efficientnet-lite0"
    teacher_fusion: str = "minus"
    student_fusion: str = "cat"
    output_stride: int = 16
    in_channels: int = 3
    pretrained: bool = True
    kd_weight: float = DEFAULT_KD_WEIGHT
    frozen_stages: int = 0
    freeze_bn: bool = False


class TeacherStudent(nn.Module):
    """The KD-MSI pair trained jointly: teacher by image labels, student by distillation.

    With ``config.frozen_stages = k > 0`` the first ``k`` backbone stages (the stem and stages 1
    to ``k - 1``) are frozen: no gradient, batch norm in eval mode. The student's frozen stages are
    set to the teacher's weights (the same ImageNet weights when pretrained), so both networks
    compute the same features there and :meth:`forward` computes them once per batch, without
    autograd, for both. The student keeps its own copy, so its state dict (and model files)
    describe a whole :class:`SiameseCAM` that runs alone at inference.

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
        check_choice(self.config.teacher_fusion, "teacher_fusion")
        make = factory if factory is not None else self._default_factory(weights, log)
        self.teacher = SiameseCAM(make(), self.config.teacher_fusion)
        self.student = SiameseCAM(make(), self.config.student_fusion)
        self._freeze(self.config.frozen_stages)

    def _freeze(self, count: int) -> None:
        """Share the teacher's first ``count`` stages with the student and freeze them."""
        limit = int(getattr(self.teacher.backbone, "stage_count", 0))
        if count and not 0 < count <= limit:
            raise KdmsiError(
                f"{self.config.backbone} has {limit} stages to freeze; choose frozen stages "
                f"from 0 to {limit}, not {count}."
            )
        pairs = zip(self.teacher.backbone.stages(count), self.student.backbone.stages(count))
        for teacher_module, student_module in pairs:
            student_module.load_state_dict(teacher_module.state_dict())
        for module in self.frozen_modules:
            module.requires_grad_(False)
            module.eval()

    @property
    def frozen_modules(self) -> list[nn.Module]:
        """The frozen modules of both backbones (empty when nothing is frozen)."""
        count = self.config.frozen_stages
        if not count:
            return []
        return [*self.teacher.backbone.stages(count), *self.student.backbone.stages(count)]

    def train(self, mode: bool = True) -> TeacherStudent:
        """Set training mode, keeping frozen stages (and, with ``freeze_bn``, all BN) in eval."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        if self.config.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

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
        count = self.config.frozen_stages
        if not count:
            return CamPair(self.teacher(a, b), self.student(a, b))
        backbone = self.teacher.backbone
        with torch.no_grad():
            shared = backbone.forward_stages(normalize_input(torch.cat([a, b]), backbone), count)
        return CamPair(
            self.teacher.cam_after_stages(shared, count),
            self.student.cam_after_stages(shared, count),
        )

    def losses(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> LossBreakdown:
        """Compute the training losses of one batch.

        Args:
            a: date A images ``[N, C, H, W]`` in [0, 1].
            b: date B images, same shape.
            y: image labels with ``N`` elements, 1 changed and 0 unchanged.

        Returns:
            The loss terms; backpropagate ``total``.
        """
        return self.losses_of(self(a, b), y)

    def losses_of(self, cams: CamPair, y: torch.Tensor) -> LossBreakdown:
        """Compute the training losses from the CAMs of :meth:`forward`.

        Args:
            cams: teacher and student CAM logits of a batch (e.g. from a
                DistributedDataParallel wrapper of this module).
            y: image labels with ``N`` elements, 1 changed and 0 unchanged.

        Returns:
            The loss terms; backpropagate ``total``.
        """
        teacher, student = cams.teacher.float(), cams.student.float()  # losses in float32
        labels = y.reshape(-1).float()
        teacher_logit = image_logit(teacher)
        bce = F.binary_cross_entropy_with_logits(teacher_logit, labels)
        distill = distillation_loss(student, teacher, labels, self.config.kd_weight)
        return LossBreakdown(
            teacher_bce=bce,
            distill=distill,
            total=bce + distill,
            teacher_logit=teacher_logit.detach(),
            student_logit=image_logit(student).detach(),
            student_cam=student.detach(),
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
            ``student_head`` (empty ones left out); every trainable parameter appears exactly
            once (frozen stages are left out).
        """
        teacher = self.teacher.param_groups()
        student = self.student.param_groups()
        groups = [
            ("teacher_backbone", teacher.backbone, lr),
            ("teacher_head", teacher.head, lr * head_multiplier),
            ("student_backbone", student.backbone, lr),
            ("student_head", student.head, lr),
        ]
        groups = [(name, [p for p in ps if p.requires_grad], rate) for name, ps, rate in groups]
        return [
            {"name": name, "params": params, "lr": group_lr}
            for name, params, group_lr in groups
            if params
        ]
