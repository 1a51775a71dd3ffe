"""Tests of Multiscale Sigmoid Inference against hand-computed examples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.detect.msi import cam_probability, msi
from core.models.backbones.registry import build_backbone
from core.models.cam import SiameseCAM


class FakeCAM(nn.Module):
    """A deterministic 'CAM': mean over bands of (b - a), average-pooled by 4, times 5."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 5.0 * F.avg_pool2d((b - a).mean(dim=1, keepdim=True), 4)


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(2, 3, 32, 24, generator=gen)
    b = torch.rand(2, 3, 32, 24, generator=gen)
    b[:, :, :, :8] += 0.5  # asymmetric change so that flipping matters
    return a, b


def up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def expected_msi(a: torch.Tensor, b: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    fake = FakeCAM()
    size = (a.shape[2], a.shape[3])
    total = torch.zeros(a.shape[0], 1, *size)
    for s in scales:
        small = (round(size[0] * s), round(size[1] * s))
        a_s = a if s == 1.0 else up(a, small)
        b_s = b if s == 1.0 else up(b, small)
        plain = torch.sigmoid(fake(a_s, b_s))
        flipped = torch.sigmoid(fake(a_s.flip(3), b_s.flip(3))).flip(3)
        total += up((plain + flipped) / 2, size)
    return total / len(scales)


def test_msi_matches_hand_computation() -> None:
    a, b = pair()
    scales = (0.5, 1.0, 1.25, 2.0)
    prob = msi(FakeCAM(), a, b)
    assert prob.shape == (2, 1, 32, 24)
    assert torch.allclose(prob, expected_msi(a, b, scales), atol=1e-6)
    # the flip average differs from the unflipped map here
    no_flip = msi(FakeCAM(), a, b, scales=scales, flip=False)
    assert not torch.allclose(prob, no_flip, atol=1e-4)


def test_single_scale_is_sigmoid_of_upsampled_map() -> None:
    a, b = pair()
    prob = msi(FakeCAM(), a, b, scales=(1.0,), flip=False)
    expected = up(torch.sigmoid(FakeCAM()(a, b)), (32, 24))
    assert torch.allclose(prob, expected, atol=1e-7)
    assert prob.min() >= 0 and prob.max() <= 1


def test_msi_inside_inference_mode_and_restores_training_mode() -> None:
    a, b = pair()
    fake = FakeCAM().train()
    with torch.inference_mode():
        prob = msi(fake, a, b, scales=(1.0, 2.0))
    assert fake.training
    assert torch.allclose(prob, expected_msi(a, b, (1.0, 2.0)), atol=1e-6)
    with pytest.raises(ValueError):
        msi(fake, a, b, scales=())


def test_msi_on_a_real_student() -> None:
    torch.manual_seed(0)
    model = SiameseCAM(build_backbone("efficientnet-lite0", pretrained=False), "cat")
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    prob = msi(model, a, b)
    assert prob.shape == (1, 1, 32, 32)
    assert model.training
    assert bool(((prob >= 0) & (prob <= 1)).all())


def test_cam_probability_is_normalized_cam() -> None:
    a, b = pair()
    prob = cam_probability(FakeCAM(), a, b)
    cam = F.relu(FakeCAM()(a, b))
    expected = up(cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-5), (32, 24))
    assert prob.shape == (2, 1, 32, 24)
    assert torch.allclose(prob, expected, atol=1e-6)
    assert prob.max() <= 1.0 and prob.min() >= 0.0
