"""Tests of the Siamese CAM classifiers and the teacher-student pair (CPU, tiny inputs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import KdmsiError
from core.models.backbones.registry import build_backbone
from core.models.cam import SiameseCAM, image_logit, normalize_input, saturation_fraction
from core.models.teacher_student import CamConfig, TeacherStudent

CONFIG = CamConfig(backbone="resnet18", pretrained=False)


@pytest.fixture(scope="module")
def pair() -> TeacherStudent:
    torch.manual_seed(0)
    return TeacherStudent(CONFIG)


def images(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=gen), torch.rand(n, 3, size, size, generator=gen)


@pytest.mark.parametrize("fusion", ["minus", "abs", "cat"])
def test_siamese_cam_shapes(fusion: str) -> None:
    backbone = build_backbone("efficientnet-lite0", pretrained=False)
    model = SiameseCAM(backbone, fusion)
    a, b = images()
    cam = model(a, b)
    assert cam.shape == (2, 1, 2, 2)
    assert model.head.bias is None
    assert model.head.in_channels == backbone.high_channels * (2 if fusion == "cat" else 1)
    assert model.image_logit(cam).shape == (2,)
    assert torch.allclose(image_logit(cam), cam.mean(dim=(1, 2, 3)))
    split = model.param_groups()
    assert len(split.backbone) + len(split.head) == len(list(model.parameters()))
    assert split.head == [model.head.weight]


def test_image_logit_of_a_share_averages_the_highest_positions() -> None:
    cam = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    cam = torch.cat([cam, -cam])
    assert torch.allclose(image_logit(cam, 0.25), torch.tensor([13.5, -1.5]))  # 4 of 16 each
    assert torch.allclose(image_logit(cam, 1e-6), torch.tensor([15.0, 0.0]))  # at least one
    assert torch.allclose(image_logit(cam, 1.0), image_logit(cam))


def test_the_teachers_loss_pools_its_share() -> None:
    a, b = images(size=64)  # a 4 x 4 CAM
    y = torch.tensor([1.0, 0.0])
    torch.manual_seed(0)
    mean = TeacherStudent(CONFIG).eval()
    topk = TeacherStudent(CamConfig(backbone="resnet18", pretrained=False, pool_share=0.25))
    topk.load_state_dict(mean.state_dict())
    topk.eval()
    with torch.no_grad():
        plain, pooled = mean.losses(a, b, y), topk.losses(a, b, y)
        teacher = mean(a, b).teacher.float()
    assert teacher.shape[-2:] == (4, 4)
    assert torch.allclose(plain.teacher_logit, image_logit(teacher))
    assert torch.allclose(pooled.teacher_logit, image_logit(teacher, 0.25))
    assert torch.allclose(pooled.student_logit, plain.student_logit)  # the student's stays
    assert not torch.allclose(pooled.teacher_bce, plain.teacher_bce)


def test_unknown_fusions_are_refused() -> None:
    backbone = build_backbone("resnet18", pretrained=False)
    with pytest.raises(KdmsiError):
        SiameseCAM(backbone, "sum")
    with pytest.raises(KdmsiError):
        TeacherStudent(CamConfig(backbone="resnet18", pretrained=False, teacher_fusion="cat"))


def test_minus_and_abs_fusions_are_consistent() -> None:
    backbone = build_backbone("resnet18", pretrained=False).eval()
    minus, absolute = SiameseCAM(backbone, "minus"), SiameseCAM(backbone, "abs")
    a, b = images()
    with torch.no_grad():
        # swapping the dates flips the sign of the minus fusion and keeps the abs fusion
        assert torch.allclose(minus(a, b), -minus(b, a), atol=1e-5)
        absolute.head.weight.copy_(minus.head.weight)
        assert torch.allclose(absolute(a, b), absolute(b, a), atol=1e-5)


def test_normalize_input_stats_and_other_band_counts() -> None:
    backbone = build_backbone("resnet18", pretrained=False)
    x = torch.rand(1, 3, 4, 4)
    assert torch.allclose(normalize_input(x, backbone), backbone.normalize(x))
    fake = nn.Module()
    fake.input_mean, fake.input_std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.25)
    x5 = torch.ones(1, 5, 2, 2)
    out = normalize_input(x5, fake)[0, :, 0, 0]
    expected = torch.tensor([0.9 / 0.5, 0.8 / 0.5, 0.7 / 0.25, 0.9 / 0.5, 0.8 / 0.5])
    assert torch.allclose(out, expected)
    out1 = normalize_input(torch.ones(1, 1, 2, 2), fake)[0, 0, 0, 0]
    assert out1.item() == pytest.approx((1 - 0.2) / (1.25 / 3))


def test_param_groups_cover_every_parameter_once(pair: TeacherStudent) -> None:
    groups = pair.param_groups(1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in pair.parameters()}
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["teacher_head"] == pytest.approx(1e-2)
    assert lrs["student_head"] == lrs["student_backbone"] == lrs["teacher_backbone"] == 1e-3
    head = next(g for g in groups if g["name"] == "teacher_head")
    assert head["params"] == [pair.teacher.head.weight]
    torch.optim.SGD(groups, lr=1e-3, momentum=0.9, nesterov=True)


def test_teacher_and_student_have_their_own_backbones(pair: TeacherStudent) -> None:
    assert pair.teacher.backbone is not pair.student.backbone
    assert pair.teacher.fusion == "minus"
    assert pair.student.fusion == "cat"


def grads(module: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def nonzero(gs: list[torch.Tensor | None]) -> bool:
    return any(g is not None and bool(g.abs().sum() > 0) for g in gs)


def test_distillation_reaches_only_the_student(pair: TeacherStudent) -> None:
    pair.zero_grad(set_to_none=True)
    a, b = images()
    out = pair.losses(a, b, torch.tensor([1, 1]))
    assert out.distill.item() > 0
    out.distill.backward()
    assert not nonzero(grads(pair.teacher))
    assert nonzero(grads(pair.student.backbone))
    assert pair.student.head.weight.grad is not None
    assert pair.student.head.weight.grad.abs().sum() > 0


def test_teacher_bce_reaches_only_the_teacher(pair: TeacherStudent) -> None:
    pair.zero_grad(set_to_none=True)
    a, b = images()
    out = pair.losses(a, b, torch.tensor([1.0, 0.0]))
    out.teacher_bce.backward()
    assert not nonzero(grads(pair.student))
    assert nonzero(grads(pair.teacher.backbone))
    assert pair.teacher.head.weight.grad is not None


def test_loss_breakdown_values(pair: TeacherStudent) -> None:
    a, b = images()
    y = torch.tensor([1.0, 0.0])
    out = pair.losses(a, b, y)
    assert torch.allclose(out.total, out.teacher_bce + out.distill)
    assert out.student_logit.shape == out.teacher_logit.shape == (2,)
    assert not out.student_logit.requires_grad
    expected = nn.functional.binary_cross_entropy_with_logits(out.teacher_logit, y)
    assert out.teacher_bce.item() == pytest.approx(expected.item(), rel=1e-5)
    scalars = out.scalars()
    assert set(scalars) == {"loss", "teacher_bce", "distill", "student_saturation"}
    assert 0.0 <= scalars["student_saturation"] <= 1.0


def test_saturation_fraction() -> None:
    cam = torch.tensor([-20.0, 0.0, 20.0, 1.0]).view(1, 1, 2, 2)
    assert saturation_fraction(cam) == pytest.approx(0.5)
    assert saturation_fraction(torch.zeros(1, 1, 3, 3)) == 0.0


def test_factory_builds_each_backbone() -> None:
    calls = []

    def factory() -> nn.Module:
        calls.append(1)
        return build_backbone("efficientnet-lite0", pretrained=False)

    model = TeacherStudent(CamConfig(teacher_fusion="abs"), factory=factory)
    assert len(calls) == 2
    a, b = images(1, 32)
    cams = model(a, b)
    assert cams.teacher.shape == cams.student.shape == (1, 1, 2, 2)
