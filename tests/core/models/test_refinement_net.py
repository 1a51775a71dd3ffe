"""Tests of the refinement segmentation network and its pseudo-label loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.models.refinement_net import ChangeSegNet, SegNetConfig, pseudo_label_loss


@pytest.mark.parametrize(
    ("backbone", "fusion", "output_stride"),
    [("efficientnet-lite0", "abs_cat", 16), ("resnet18", "cat", 8)],
)
def test_output_stride_four_and_predict(backbone: str, fusion: str, output_stride: int) -> None:
    torch.manual_seed(0)
    config = SegNetConfig(backbone, fusion, output_stride, pretrained=False, channels=32)
    model = ChangeSegNet(config)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    logits = model(a, b)
    assert logits.shape == (2, 1, 16, 16)
    prob = model.predict(a, b)
    assert prob.shape == (2, 1, 64, 64)
    assert model.training
    assert bool(((prob >= 0) & (prob <= 1)).all())


def test_rates_follow_output_stride() -> None:
    assert SegNetConfig(output_stride=16).rates == (6, 12)
    assert SegNetConfig(output_stride=8).rates == (12, 24)


def test_param_groups_cover_every_parameter_once() -> None:
    model = ChangeSegNet(SegNetConfig("resnet18", pretrained=False, channels=16))
    groups = model.param_groups(1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-2)]


def test_loss_ignores_weight_zero_pixels() -> None:
    logits = torch.randn(1, 1, 8, 8, requires_grad=True)
    target = (torch.rand(1, 1, 8, 8) > 0.5).float()
    weight = torch.ones(1, 1, 8, 8)
    weight[..., 4:, :] = 0.0  # uncertain bottom half
    loss = pseudo_label_loss(logits, target, weight)
    expected = F.binary_cross_entropy_with_logits(logits[..., :4, :], target[..., :4, :])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad[..., 4:, :], torch.zeros(1, 1, 4, 8))
    assert bool((logits.grad[..., :4, :] != 0).all())
    changed = logits.detach().clone()
    changed[..., 4:, :] = float("nan")  # even NaN in ignored pixels does not leak
    assert pseudo_label_loss(changed, target, weight).item() == pytest.approx(loss.item())


def test_loss_upsamples_logits_to_the_target() -> None:
    logits = torch.randn(2, 1, 4, 4)
    target = torch.rand(2, 16, 16)
    weight = torch.ones(2, 16, 16)
    up = F.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    expected = F.binary_cross_entropy_with_logits(up, target.unsqueeze(1))
    assert pseudo_label_loss(logits, target, weight).item() == pytest.approx(expected.item())


def test_loss_weighted_mean_and_all_ignored() -> None:
    logits = torch.tensor([[[[2.0, -1.0]]]], requires_grad=True)
    target = torch.tensor([[[1.0, 0.0]]])
    weight = torch.tensor([[[1.0, 3.0]]])
    bce = F.binary_cross_entropy_with_logits(logits[0, 0, 0], target[0, 0], reduction="none")
    expected = (bce[0] + 3 * bce[1]) / 4
    assert pseudo_label_loss(logits, target, weight).item() == pytest.approx(expected.item())
    zero = pseudo_label_loss(logits, target, torch.zeros_like(weight))
    assert zero.item() == 0.0
    zero.backward()


def test_loss_accepts_inference_tensors() -> None:
    with torch.inference_mode():
        target = torch.ones(1, 1, 4, 4)
        weight = torch.ones(1, 1, 4, 4)
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    loss = pseudo_label_loss(logits, target, weight)
    loss.backward()
    assert loss.item() == pytest.approx(F.softplus(torch.tensor(0.0)).item())
