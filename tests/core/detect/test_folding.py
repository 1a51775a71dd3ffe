"""Tests of core.detect.folding: batch norms folded into their convolutions for inference."""

from __future__ import annotations

import torch
from torch import nn

from core.detect.folding import fold_batchnorm, inference_network


def test_folding_removes_the_batch_norms_and_keeps_the_function(saved):
    path, info, states = saved
    network = inference_network(info, states, "student", path, torch.device("cpu"))
    assert not [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not network.training


class Shared(nn.Module):
    """A convolution whose output is read by its batch norm and by the output too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = self.conv(a - b)
        return self.bn(x) + x


def test_a_convolution_with_another_reader_is_not_folded():
    model = Shared().eval()
    model.bn.running_mean.fill_(0.5)
    model.bn.running_var.fill_(2.0)
    example = (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert fold_batchnorm(model, example) is model


def test_a_plain_conv_bn_pair_is_folded_exactly_enough():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.body(a + b)

    pair = Pair().eval()
    example = (torch.rand(2, 3, 9, 9), torch.rand(2, 3, 9, 9))
    folded = fold_batchnorm(pair, example)
    assert folded is not pair
    assert isinstance(folded.body[1], nn.Identity)
    with torch.inference_mode():
        assert torch.allclose(folded(*example), pair(*example), atol=1e-5)
