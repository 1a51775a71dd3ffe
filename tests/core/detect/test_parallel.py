"""Detection split across worker processes by bands of rows: the same map as one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from osgeo import gdal

from core.callbacks import Callbacks
from core.detect.pair import detect_with_model
from core.detect.parallel import row_bands
from core.detect.params import DetectParams
from core.detect.tiled import TilingParams, axis_plan
from core.errors import Canceled
from core.models.model_file import ModelInfo, save_model
from core.models.teacher_student import CamConfig, TeacherStudent

gdal.UseExceptions()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A random ResNet-18 model file (bands 1, 2, 3; tile 32)."""
    torch.manual_seed(0)
    networks = TeacherStudent(CamConfig(backbone="resnet18", pretrained=False)).eval()
    torch.nn.init.normal_(networks.student.head.weight, std=0.05)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    info = ModelInfo("resnet18", "minus", "cat", 16, [1, 2, 3], 32, 0.41, 0.37)
    save_model(path, info, {"student": networks.student.state_dict()})
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory, write_raster, scene):
    folder = tmp_path_factory.mktemp("pair")
    before = write_raster(folder / "a.tif", scene(90, 150, seed=1))
    after = write_raster(folder / "b.tif", scene(90, 150, seed=2))
    return before, after


def test_row_bands_cut_at_window_rows_and_cover_every_row():
    tiling = TilingParams(window=64, overlap=16, margin=32)
    assert axis_plan(150, 64, 16, 1, 64) == (61, [0, 44, 89])  # three rows of 61 px windows
    bands = row_bands(150, tiling, 2)
    assert [(b.start, b.stop) for b in bands] == [(0, 89), (89, 150)]
    assert len(row_bands(150, tiling, 8)) == 3  # never more bands than rows of windows
    assert [(b.start, b.stop) for b in row_bands(40, tiling, 4)] == [(0, 40)]


def test_two_workers_equal_one(model, pair, tmp_path):
    params = DetectParams(scales=(1.0,), device="cpu", window=64, batch_size=2)
    one, two = tmp_path / "one.tif", tmp_path / "two.tif"
    progress: list[float] = []
    detect_with_model(*pair, model, one, params)
    threshold = detect_with_model(
        *pair, model, two, DetectParams(**{**params.__dict__, "workers": 2}),
        callbacks=Callbacks(progress=lambda f, m: progress.append(f)),
    )  # fmt: skip
    assert threshold == pytest.approx(0.37)  # single scale
    first, second = gdal.Open(str(one)).ReadAsArray(), gdal.Open(str(two)).ReadAsArray()
    assert second.shape == (150, 90) and (second >= 0).all()
    assert float(first.std()) > 1e-4, "a constant map would compare nothing"
    np.testing.assert_allclose(second, first, atol=1e-5, rtol=0)
    assert gdal.Open(str(two)).GetMetadata() == gdal.Open(str(one)).GetMetadata()
    assert progress and progress[-1] == pytest.approx(1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tif", "two.tif"]


def test_cancel_stops_the_workers_and_leaves_nothing(model, pair, tmp_path):
    out = tmp_path / "p.tif"
    params = DetectParams(scales=(1.0,), flip=False, device="cpu", window=64, workers=2)
    with pytest.raises(Canceled):
        detect_with_model(*pair, model, out, params, callbacks=Callbacks(is_canceled=lambda: True))
    assert list(tmp_path.iterdir()) == []
