"""Tests of the distillation target and loss."""

import pytest
import torch
from torch import nn

from core.models.distillation import distillation_loss, distillation_target


def test_distillation_target() -> None:
    cam = torch.tensor([[-1.0, 2.0], [4.0, 1.0]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    cam.requires_grad_(True)
    target = distillation_target(cam, torch.tensor([1, 0]))
    assert not target.requires_grad
    scale = 4.0 + 1e-5
    expected = torch.tensor([[0.0, 2.0 / scale], [1.0 * 4 / scale, 1.0 / scale]])
    assert torch.allclose(target[0, 0], expected)
    assert torch.equal(target[1], torch.zeros_like(target[1]))  # y = 0: no change anywhere
    # an unchanged image's distillation pushes the student's sigmoid towards 0
    student = torch.full((2, 1, 2, 2), -30.0)
    loss = distillation_loss(student, cam, torch.tensor([0, 0]), 10.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-9)


def test_distillation_target_is_resized_to_the_student() -> None:
    teacher = torch.rand(1, 1, 4, 4)
    student = torch.zeros(1, 1, 8, 8, requires_grad=True)
    loss = distillation_loss(student, teacher, torch.tensor([1.0]), 10.0)
    target = nn.functional.interpolate(
        distillation_target(teacher, torch.tensor([1.0])), size=(8, 8), mode="bilinear"
    )
    expected = 10.0 * ((0.5 - target) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
