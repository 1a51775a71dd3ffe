"""Tests of core.runtime.precision: which autocast type runs where, and its effect on networks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from osgeo import gdal

from core.detect.msi import msi
from core.detect.pair import detect_with_model
from core.detect.params import DetectParams
from core.errors import KdmsiError
from core.models.model_file import ModelInfo, save_model
from core.models.teacher_student import CamConfig, TeacherStudent
from core.runtime.precision import autocast_dtype, autocast_predictor, cpu_has_bf16, describe

CPU = torch.device("cpu")
NATIVE = pytest.mark.skipif(
    not cpu_has_bf16(), reason="this CPU has no native bfloat16: auto runs float32 here"
)


def test_names_resolve_per_device():
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("auto", CPU) is (torch.bfloat16 if cpu_has_bf16() else None)
    assert autocast_dtype("auto", torch.device("cuda")) is torch.float16
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16
    assert autocast_dtype("auto", torch.device("mps")) is None
    assert [describe(d) for d in (None, torch.bfloat16, torch.float16)] == [
        "float32",
        "bfloat16",
        "float16",
    ]


@pytest.mark.parametrize(
    ("precision", "device", "words"),
    [
        ("fp16", "cpu", "--precision fp16 needs a GPU"),
        ("bf16", "mps", "not supported on Apple MPS"),
        ("half", "cpu", "--precision 'half' is unknown"),
    ],
)
def test_impossible_choices_are_user_errors(precision, device, words):
    with pytest.raises(KdmsiError, match=words):
        autocast_dtype(precision, torch.device(device))


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    torch.manual_seed(0)
    return TeacherStudent(CamConfig(pretrained=True)).student.eval()


def test_bfloat16_msi_stays_close_to_float32_on_a_real_network(student):
    generator = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 96, 96, generator=generator) for _ in range(2))
    exact = msi(student, a, b)
    fast = autocast_predictor(lambda x, y: msi(student, x, y), CPU, torch.bfloat16)(a, b)
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    difference = (fast - exact).abs()
    assert 0 < difference.max().item() < 0.1  # rounded, not another map
    assert difference.mean().item() < 0.01
    same = autocast_predictor(lambda x, y: msi(student, x, y), CPU, None)(a, b)
    assert torch.equal(same, exact)


@NATIVE
def test_detect_records_its_precision_and_auto_is_bfloat16_here(student, tmp_path, write_raster):
    rng = np.random.default_rng(0)
    before = write_raster(tmp_path / "a.tif", rng.integers(0, 255, (3, 80, 80), dtype=np.uint8))
    after = write_raster(tmp_path / "b.tif", rng.integers(0, 255, (3, 80, 80), dtype=np.uint8))
    model = tmp_path / "model.pt"
    teacher = TeacherStudent(CamConfig(pretrained=False)).teacher
    info = ModelInfo("efficientnet-lite0", "minus", "cat", 16, [1, 2, 3], 32, threshold=0.5)
    save_model(model, info, {"student": student.state_dict(), "teacher": teacher.state_dict()})
    params = DetectParams(scales=(1.0,), flip=False, device="cpu")
    maps = {}
    for precision in ("auto", "fp32"):
        out = tmp_path / f"{precision}.tif"
        detect_with_model(before, after, model, out, replace(params, precision=precision))
        dataset = gdal.Open(str(out))
        maps[precision] = dataset.ReadAsArray()
        expected = "bfloat16" if precision == "auto" else "float32"
        assert dataset.GetMetadataItem("kdmsi_precision") == expected
    assert 0 < np.abs(maps["auto"] - maps["fp32"]).max() < 0.1


def test_losses_are_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    pair = TeacherStudent(CamConfig(pretrained=True)).train()
    generator = torch.Generator().manual_seed(2)
    a, b = (torch.rand(4, 3, 64, 64, generator=generator) for _ in range(2))
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cams = pair(a, b)
        out = pair.losses_of(cams, y)
    assert cams.teacher.dtype == torch.bfloat16  # the networks ran in bfloat16
    assert out.total.dtype == out.teacher_bce.dtype == out.distill.dtype == torch.float32
    out.total.backward()
    grads = [p.grad for p in pair.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
