"""Tests of the torch device choice."""

from __future__ import annotations

import pytest
import torch

from core.errors import KdmsiError
from core.runtime.devices import pick_device

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def test_cpu_is_always_available():
    logs = []
    device = pick_device("cpu", lambda level, message: logs.append((level, message)))
    assert device == torch.device("cpu")
    assert logs == [("info", "Using device cpu.")]


def test_auto_picks_a_device_and_says_which():
    logs = []
    device = pick_device("auto", lambda level, message: logs.append((level, message)))
    expected = "cuda" if HAS_CUDA else "mps" if HAS_MPS else "cpu"
    assert device.type == expected
    assert len(logs) == 1 and logs[0][0] == "info"
    if expected == "cpu":
        assert "No GPU found" in logs[0][1]


def test_default_is_auto_and_log_is_optional():
    assert pick_device().type in {"cpu", "cuda", "mps"}


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_user_error(name):
    with pytest.raises(KdmsiError, match=f"--device {name}") as err:
        pick_device(name)
    assert "--device auto or cpu" in str(err.value)


@pytest.mark.skipif(HAS_MPS, reason="this machine has an Apple GPU")
def test_mps_without_an_apple_gpu_is_a_user_error():
    with pytest.raises(KdmsiError, match="mps"):
        pick_device("mps")


@pytest.mark.parametrize("name", ["gpu", "tpu", "", "CPU"])
def test_unknown_device_names(name):
    with pytest.raises(KdmsiError, match="is unknown"):
        pick_device(name)
