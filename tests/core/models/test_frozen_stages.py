"""Frozen early stages shared by teacher and student (random weights, tiny inputs, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import KdmsiError
from core.models.backbones.registry import build_backbone
from core.models.cam import SiameseCAM
from core.models.teacher_student import CamConfig, TeacherStudent

CASES = [("efficientnet-lite0", 3), ("resnet18", 2)]


def make_pair(backbone: str, frozen: int, freeze_bn: bool = False) -> TeacherStudent:
    torch.manual_seed(0)
    config = CamConfig(
        backbone=backbone, pretrained=False, frozen_stages=frozen, freeze_bn=freeze_bn
    )
    return TeacherStudent(config).train()


def images(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=generator), torch.rand(
        n, 3, size, size, generator=generator
    )


@pytest.mark.parametrize(("backbone", "frozen"), CASES)
def test_shared_stages_give_each_network_its_own_output(backbone: str, frozen: int) -> None:
    pair = make_pair(backbone, frozen)
    a, b = images()
    cams = pair(a, b)
    torch.testing.assert_close(cams.teacher, pair.teacher(a, b))
    torch.testing.assert_close(cams.student, pair.student(a, b))


@pytest.mark.parametrize(("backbone", "frozen"), CASES)
def test_frozen_stages_are_copied_fixed_and_left_out_of_the_optimizer(
    backbone: str, frozen: int
) -> None:
    pair = make_pair(backbone, frozen)
    teacher_stages = pair.teacher.backbone.stages(frozen)
    student_stages = pair.student.backbone.stages(frozen)
    assert teacher_stages and len(teacher_stages) == len(student_stages)
    for t_module, s_module in zip(teacher_stages, student_stages):
        for (name, t_value), s_value in zip(
            t_module.state_dict().items(), s_module.state_dict().values()
        ):
            torch.testing.assert_close(t_value, s_value, msg=name)
    frozen_params = {id(p) for m in pair.frozen_modules for p in m.parameters()}
    optimized = {id(p) for g in pair.param_groups(1e-3) for p in g["params"]}
    assert frozen_params and not frozen_params & optimized
    trainable = {id(p) for p in pair.parameters()} - frozen_params
    assert optimized == trainable
    a, b = images()
    pair.losses(a, b, torch.tensor([1.0, 0.0])).total.backward()
    assert all(p.grad is None for m in pair.frozen_modules for p in m.parameters())
    assert all(p.grad is not None for g in pair.param_groups(1e-3) for p in g["params"])


def _batch_norms(modules: list[nn.Module]) -> list[nn.Module]:
    return [m for module in modules for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_batch_norm_stays_in_eval_and_keeps_its_statistics() -> None:
    pair = make_pair("efficientnet-lite0", 3)
    frozen_bn = _batch_norms(pair.frozen_modules)
    before = [bn.running_mean.clone() for bn in frozen_bn]
    pair.train()
    a, b = images()
    pair(a, b)
    assert frozen_bn and not any(bn.training for bn in frozen_bn)
    for bn, mean in zip(frozen_bn, before):
        torch.testing.assert_close(bn.running_mean, mean)
    later = _batch_norms([pair.teacher.backbone._blocks[-1]])
    assert all(bn.training for bn in later)


def test_freeze_bn_keeps_every_batch_norm_in_eval() -> None:
    pair = make_pair("resnet18", 0, freeze_bn=True)
    assert not any(bn.training for bn in _batch_norms([pair]))
    assert pair.teacher.head.training and pair.teacher.backbone.layer4.training


@pytest.mark.parametrize("frozen", [-1, 9])
def test_frozen_stages_out_of_range(frozen: int) -> None:
    with pytest.raises(KdmsiError, match="frozen stages"):
        make_pair("efficientnet-lite0", frozen)


def test_student_of_a_frozen_pair_runs_alone_as_in_model_files() -> None:
    """Inference rebuilds a plain SiameseCAM from the student's state dict (strictly)."""
    pair = make_pair("efficientnet-lite0", 3).eval()
    alone = SiameseCAM(build_backbone("efficientnet-lite0", pretrained=False), "cat")
    alone.load_state_dict(pair.student.state_dict(), strict=True)
    alone.eval()
    a, b = images()
    with torch.no_grad():
        torch.testing.assert_close(alone(a, b), pair(a, b).student)
