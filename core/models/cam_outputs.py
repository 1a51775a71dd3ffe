"""What the CAM networks of :mod:`core.models.cam` return: image logits, losses, saturation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


def image_logit(cam: torch.Tensor, share: float = 1.0) -> torch.Tensor:
    """Image-level change logit: the mean of a CAM's highest ``share`` of positions.

    With ``share`` 1 (the default, as published) it is the spatial mean; a smaller share averages
    only the highest positions (at least one), so a tile with a small change needs no high map
    over its background to be called changed.

    Args:
        cam: CAM logits ``[N, 1, h, w]``.
        share: the share of the positions averaged, in (0, 1].

    Returns:
        Logits ``[N]``.
    """
    if share >= 1.0:
        return cam.mean(dim=(2, 3)).reshape(-1)
    flat = cam.flatten(start_dim=1)
    count = max(1, round(share * flat.shape[1]))
    return flat.topk(count, dim=1).values.mean(dim=1)


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
