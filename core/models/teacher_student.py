"""The teacher-student pair of KD-MSI: two Siamese CAM networks trained together.

:class:`TeacherStudent` holds two :class:`core.models.cam.SiameseCAM`, each with its own backbone:
the teacher (difference fusion) learns from the image labels with binary cross-entropy; the student
(``cat`` fusion by default) learns only by distillation, ``kd_weight`` x MSE between the sigmoid of
its map and the teacher's CAM after ReLU, divided by its spatial maximum and multiplied by the image
label (detached, so the teacher gets no gradient from distillation). One optimizer updates both in
the same step; only the student is used at inference (see :mod:`core.detect.msi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.choices import check_choice
from core.errors import KdmsiError
from core.models.backbones.base import LogFn
from core.models.backbones.registry import build_backbone
from core.models.cam import (
    DEFAULT_KD_WEIGHT,
    HEAD_LR_MULTIPLIER,
    BackboneFactory,
    SiameseCAM,
    normalize_input,
)
from core.models.cam_outputs import CamPair, LossBreakdown, image_logit
from core.models.distillation import distillation_loss


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
        pool_share: the share of the teacher's CAM positions, highest first, whose mean is its
            image logit in training (1, the spatial mean, as published; see
            :func:`core.models.cam_outputs.image_logit`).
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
    pool_share: float = 1.0


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
        teacher_logit = image_logit(teacher, self.config.pool_share)
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
