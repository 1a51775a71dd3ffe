"""The distillation of KD-MSI: the teacher's normalised CAM as the student's target.

The target is ReLU(teacher CAM) divided by its spatial maximum and multiplied by the image label,
detached, so the teacher gets no gradient from distillation; the loss is ``weight`` x MSE between
the sigmoid of the student's map and that target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TARGET_EPS = 1e-5


def distillation_target(teacher_cam: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Teacher target for the student: ReLU(CAM) / (spatial max + eps) x label, detached.

    Args:
        teacher_cam: teacher CAM logits ``[N, 1, h, w]``.
        y: image labels with ``N`` elements in {0, 1}.

    Returns:
        Target ``[N, 1, h, w]`` in [0, 1], zero for unchanged images, without gradient.
    """
    cam = F.relu(teacher_cam.detach())
    peak = cam.amax(dim=(2, 3), keepdim=True)
    label = y.detach().reshape(-1, 1, 1, 1).to(cam.dtype)
    return cam / (peak + TARGET_EPS) * label


def distillation_loss(
    student_cam: torch.Tensor, teacher_cam: torch.Tensor, y: torch.Tensor, weight: float
) -> torch.Tensor:
    """``weight`` x MSE between sigmoid(student CAM) and :func:`distillation_target`.

    A target of another size than the student's map is resized bilinearly to it.

    Args:
        student_cam: student CAM logits ``[N, 1, h, w]``.
        teacher_cam: teacher CAM logits ``[N, 1, h', w']``.
        y: image labels with ``N`` elements in {0, 1}.
        weight: the distillation weight.

    Returns:
        A scalar; its gradient reaches the student only.
    """
    target = distillation_target(teacher_cam, y)
    if target.shape[-2:] != student_cam.shape[-2:]:
        size = tuple(student_cam.shape[-2:])
        target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
    return weight * F.mse_loss(torch.sigmoid(student_cam), target)
