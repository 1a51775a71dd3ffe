"""The student exported to ONNX and run by onnxruntime: same probabilities as torch.

Uses an EfficientNet-Lite0 student with ImageNet weights and a random head (the default backbone,
whose TensorFlow "same" padding is what the export must get right) and a window of a real
LEVIR-CD pair from ../shared/data (skipped when absent); the engine tests use small synthetic
GeoTIFF pairs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from osgeo import gdal

from core.detect.msi import msi
from core.detect.onnx import OnnxStudent, _require, export_onnx
from core.detect.pair import detect_with_model
from core.detect.params import DetectParams, resolve_engine
from core.detect.predictors import make_predictor
from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.io.windows import Window
from core.models.model_file import ModelInfo, load_model, save_model
from core.models.rebuild import build_network
from core.models.teacher_student import CamConfig, TeacherStudent
from core.runtime.precision import cpu_has_bf16

pytest.importorskip("onnx", reason="the ONNX export needs `pip install onnx`")
pytest.importorskip("onnxruntime", reason="the ONNX engine needs `pip install onnxruntime`")

gdal.UseExceptions()
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model file with a random EfficientNet-Lite0 student (bands 1, 2, 3; tile 64)."""
    torch.manual_seed(0)
    pair = TeacherStudent(CamConfig(pretrained=True)).eval()  # real BN statistics
    torch.nn.init.normal_(pair.student.head.weight, std=0.05)  # a new head starts at zero
    path = tmp_path_factory.mktemp("model") / "model.pt"
    info = ModelInfo("efficientnet-lite0", "minus", "cat", 16, [1, 2, 3], 64, 0.41, 0.37)
    states = {"student": pair.student.state_dict(), "teacher": pair.teacher.state_dict()}
    save_model(path, info, states)
    return path


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "student.onnx")


def test_export_matches_torch_on_a_real_window(model, exported, require, shared_data):
    folder = require(shared_data / "levir_cd_full_scm")
    before, after = folder / "A" / "test_7.png", folder / "B" / "test_7.png"
    with RasterPair.open(before, after) as pair:
        stretch = compute_stretch(pair)
        data = pair.read(Window(300, 200, 208, 160))  # 13 x 10 map cells, batch of one
    a = torch.from_numpy(stretch.before.apply(data.before)[None])
    b = torch.from_numpy(stretch.after.apply(data.after)[None])
    info, states = load_model(model)
    torch_predictor = make_predictor("kdmsi", info, states, model, CPU, (1.0,), False)
    onnx_student = OnnxStudent(exported)
    with torch.inference_mode():
        expected = torch_predictor(a, b)
        got = msi(onnx_student, a, b, scales=(1.0,), flip=False)
        flipped = torch.cat([a, a.flip(-1)]), torch.cat([b, b.flip(-1)])  # a batch of two
        batch_expected = torch.sigmoid(make_student(model)(*flipped))
        batch_got = torch.sigmoid(onnx_student(*flipped))
    assert got.shape == expected.shape == (1, 1, 160, 208)
    assert float(expected.std()) > 1e-3, "a constant map would compare nothing"
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=0)
    assert batch_got.shape == (2, 1, 10, 13)
    np.testing.assert_allclose(batch_got.numpy(), batch_expected.numpy(), atol=1e-4, rtol=0)
    assert onnx_student.info == info


def make_student(model):
    info, states = load_model(model)
    return build_network(info, states, "student", model)


@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0, 1.25, 2.0)])
def test_onnx_engine_equals_torch_engine(model, exported, tmp_path, write_raster, scene, scales):
    # several windows, so that both engines must cut the pair the same way for the maps to agree
    before = write_raster(tmp_path / "a.tif", scene(150, 110, seed=1))
    after = write_raster(tmp_path / "b.tif", scene(150, 110, seed=2))
    params = DetectParams(scales=scales, flip=len(scales) > 1, device="cpu", window=64)
    onnx = replace(params, engine="onnx")
    threshold = detect_with_model(before, after, exported, tmp_path / "onnx.tif", onnx)
    assert threshold == pytest.approx(0.41 if len(scales) > 1 else 0.37)
    torch_fp32 = replace(params, engine="torch", precision="fp32")
    detect_with_model(before, after, model, tmp_path / "torch.tif", torch_fp32)
    got = gdal.Open(str(tmp_path / "onnx.tif")).ReadAsArray()
    expected = gdal.Open(str(tmp_path / "torch.tif")).ReadAsArray()
    assert got.shape == (110, 150) and (got >= 0).all()
    assert float(expected.std()) > 1e-3, "a constant map would compare nothing"
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    metadata = gdal.Open(str(tmp_path / "onnx.tif")).GetMetadata()
    assert metadata["kdmsi_engine"] == "onnx" and metadata["kdmsi_precision"] == "float32"
    assert metadata["kdmsi_scales"] == ",".join(f"{s:g}" for s in scales)


def test_onnx_engine_runs_the_combined_map(model, exported, tmp_path, write_raster, scene):
    before = write_raster(tmp_path / "a.tif", scene(150, 110, seed=1))
    after = write_raster(tmp_path / "b.tif", scene(150, 110, seed=2))
    params = DetectParams("kdmsi-cva", scales=(1.0,), flip=False, device="cpu", window=64)
    onnx_engine = replace(params, engine="onnx")
    detect_with_model(before, after, exported, tmp_path / "onnx.tif", onnx_engine)
    torch_fp32 = replace(params, engine="torch", precision="fp32")
    detect_with_model(before, after, model, tmp_path / "torch.tif", torch_fp32)
    onnx, torch_map = (gdal.Open(str(tmp_path / f"{n}.tif")) for n in ("onnx", "torch"))
    np.testing.assert_allclose(onnx.ReadAsArray(), torch_map.ReadAsArray(), atol=1e-4, rtol=0)
    assert onnx.GetMetadata()["kdmsi_method"] == "kdmsi-cva"
    measured = onnx.GetMetadata()["kdmsi_cva_threshold"]
    assert measured == torch_map.GetMetadata()["kdmsi_cva_threshold"] and float(measured) > 0


def test_onnx_engine_exports_a_pt_model_on_the_fly(model, exported, tmp_path, write_raster, scene):
    before = write_raster(tmp_path / "a.tif", scene(70, 50, seed=1))
    after = write_raster(tmp_path / "b.tif", scene(70, 50, seed=2))
    single = DetectParams(scales=(1.0,), flip=False, device="cpu")
    on_the_fly = DetectParams(scales=(1.0,), flip=False, device="cpu", engine="onnx")
    detect_with_model(before, after, model, tmp_path / "pt.tif", on_the_fly)
    detect_with_model(before, after, exported, tmp_path / "x.tif", single)  # auto: .onnx
    first = gdal.Open(str(tmp_path / "pt.tif")).ReadAsArray()
    second = gdal.Open(str(tmp_path / "x.tif")).ReadAsArray()
    np.testing.assert_allclose(first, second, atol=1e-6, rtol=0)


def test_unaligned_sizes_and_wrong_engines_are_refused(model, exported, tmp_path):
    student = OnnxStudent(exported)
    with pytest.raises(KdmsiError, match="multiples of 16"):
        student(torch.rand(1, 3, 40, 48), torch.rand(1, 3, 40, 48))
    out = tmp_path / "p.tif"
    with pytest.raises(KdmsiError, match="ONNX file"):
        detect_with_model(out, out, exported, out, DetectParams(engine="torch"))
    with pytest.raises(KdmsiError, match="only --method kdmsi"):
        detect_with_model(out, out, exported, out, DetectParams(method="cam"))
    with pytest.raises(KdmsiError, match="already exists"):
        export_onnx(model, exported)
    with pytest.raises(KdmsiError, match=r"not a kdmsi ONNX export|cannot be read"):
        OnnxStudent(model)  # a .pt file is no ONNX model
    assert not out.exists()


def test_missing_optional_package_names_the_pip_command():
    with pytest.raises(KdmsiError, match=r"pip install kdmsi_no_such_package"):
        _require("kdmsi_no_such_package")


@pytest.mark.parametrize(
    "method, device, precision, expected",
    [
        # the faster engine on a CPU without native bfloat16; with it, auto is torch's bfloat16
        ("kdmsi", "cpu", "auto", "torch" if cpu_has_bf16() else "onnx"),
        ("kdmsi-cva", "cpu", "fp32", "onnx"),
        ("kdmsi", "cuda", "auto", "torch"),  # GPUs stay with torch (half precision there)
        ("kdmsi", "cpu", "bf16", "torch"),  # a precision ONNX does not run was asked for
        ("cam", "cpu", "auto", "torch"),  # the teacher is not exported
    ],
)
def test_auto_engine_runs_a_pt_students_map_with_onnx_on_the_cpu(
    model, method, device, precision, expected
):
    assert resolve_engine("auto", model, method, device, precision) == expected
    assert resolve_engine("torch", model, method, device, precision) == "torch"


@pytest.mark.skipif(cpu_has_bf16(), reason="with native bfloat16 the default runs torch's bfloat16")
def test_the_default_detect_on_the_cpu_uses_onnx(model, tmp_path, write_raster, scene):
    before = write_raster(tmp_path / "a.tif", scene(70, 50, seed=1))
    after = write_raster(tmp_path / "b.tif", scene(70, 50, seed=2))
    default = DetectParams(scales=(1.0,), flip=False, device="cpu")
    detect_with_model(before, after, model, tmp_path / "auto.tif", default)
    torch_fp32 = replace(default, engine="torch", precision="fp32")
    detect_with_model(before, after, model, tmp_path / "torch.tif", torch_fp32)
    auto = gdal.Open(str(tmp_path / "auto.tif"))
    assert auto.GetMetadataItem("kdmsi_engine") == "onnx"
    expected = gdal.Open(str(tmp_path / "torch.tif")).ReadAsArray()
    np.testing.assert_allclose(auto.ReadAsArray(), expected, atol=1e-4, rtol=0)
