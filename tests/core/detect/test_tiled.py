"""Tests of tiled prediction over a whole pair: blending, edges, nodata, metadata and cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from osgeo import gdal

from core.callbacks import Callbacks
from core.detect.tiled import NODATA, TilingParams, blend_weight, predict_pair
from core.errors import Canceled, KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.io.windows import Window

gdal.UseExceptions()
CPU = torch.device("cpu")


def abs_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A position-independent predictor: per-pixel mean absolute difference of the dates."""
    return (b - a).abs().mean(1, keepdim=True)


def whole_image(pair: RasterPair) -> tuple[np.ndarray, np.ndarray]:
    """The predictor applied to the whole pair at once, and the validity mask."""
    stretch = compute_stretch(pair)
    data = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
    a = np.where(data.valid, stretch.before.apply(data.before), 0.0)
    b = np.where(data.valid, stretch.after.apply(data.after), 0.0)
    prob = abs_difference(torch.from_numpy(a[None]), torch.from_numpy(b[None]))[0, 0].numpy()
    return prob, data.valid


@pytest.fixture
def make_pair(tmp_path, write_raster, scene):
    def make(width: int, height: int, nodata: bool = False) -> tuple:
        a = scene(width, height, seed=1)
        b = scene(width, height, seed=2)
        if nodata:
            a[:, 10:30, 50:90] = 0
            a[:, -5:, :7] = 0
        before = write_raster(tmp_path / "a.tif", a, nodata=0 if nodata else None)
        after = write_raster(tmp_path / "b.tif", b)
        return before, after

    return make


def run(pair: RasterPair, out, params: TilingParams, **kw):
    return predict_pair(
        pair, abs_difference, compute_stretch(pair), out, params, CPU, {"m": "x"}, **kw
    )


def test_blend_weight_is_positive_and_peaks_in_the_centre():
    weight = blend_weight(9, 12)
    assert weight.shape == (9, 12) and weight.dtype == np.float32
    assert weight.min() > 0
    assert np.unravel_index(weight.argmax(), weight.shape) in {(4, 5), (4, 6)}
    assert np.allclose(weight, weight[::-1, ::-1])


@pytest.mark.parametrize(
    ("size", "params"),
    [
        ((203, 157), TilingParams(window=64, overlap=16, batch_size=3)),
        ((203, 157), TilingParams(window=50, overlap=0, batch_size=1)),
        ((40, 30), TilingParams(window=64, overlap=16, batch_size=3)),  # smaller than a window
    ],
    ids=["overlap", "no-overlap", "small"],
)
def test_tiled_equals_whole_image(make_pair, tmp_path, size, params):
    before, after = make_pair(*size)
    out = tmp_path / "prob.tif"
    progress = []
    callbacks = Callbacks(progress=lambda f, m: progress.append(f))
    with RasterPair.open(before, after) as pair:
        assert run(pair, out, params, callbacks=callbacks) == out
        expected, valid = whole_image(pair)
    assert valid.all()
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == size
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Float32
    assert band.GetNoDataValue() == NODATA
    got = band.ReadAsArray()
    assert np.isfinite(got).all()
    assert (got >= 0).all(), "every pixel must be written"
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert progress and progress[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(progress, progress[1:]))
    assert not list(tmp_path.glob(".*.partial"))


def test_output_is_on_a_grid_with_metadata(make_pair, tmp_path):
    before, after = make_pair(203, 157)
    out = tmp_path / "prob.tif"
    metadata = {"kdmsi_method": "test", "kdmsi_threshold": "0.37"}
    with RasterPair.open(before, after) as pair:
        stretch = compute_stretch(pair)
        predict_pair(pair, abs_difference, stretch, out, TilingParams(64, 16, 3), CPU, metadata)
    src, ds = gdal.Open(str(before)), gdal.Open(str(out))
    assert ds.GetGeoTransform() == src.GetGeoTransform()
    assert ds.GetSpatialRef().IsSame(src.GetSpatialRef())
    items = ds.GetMetadata()
    assert items["kdmsi_method"] == "test" and items["kdmsi_threshold"] == "0.37"
    assert ds.GetRasterBand(1).GetDescription() == "change probability"


def test_nodata_pixels_become_minus_one(make_pair, tmp_path):
    before, after = make_pair(203, 157, nodata=True)
    out = tmp_path / "prob.tif"
    with RasterPair.open(before, after) as pair:
        run(pair, out, TilingParams(window=64, overlap=16, batch_size=3))
        expected, valid = whole_image(pair)
    got = gdal.Open(str(out)).ReadAsArray()
    assert (~valid).sum() == 20 * 40 + 5 * 7
    assert (got[~valid] == NODATA).all()
    assert (got[valid] >= 0).all()
    np.testing.assert_allclose(got[valid], expected[valid], atol=1e-5, rtol=0)


def test_existing_output_is_refused_unless_overwrite(make_pair, tmp_path):
    before, after = make_pair(40, 30)
    out = tmp_path / "prob.tif"
    out.write_bytes(b"keep me")
    with RasterPair.open(before, after) as pair:
        with pytest.raises(KdmsiError, match="already exists"):
            run(pair, out, TilingParams(64, 16, 2))
        assert out.read_bytes() == b"keep me"
        run(pair, out, TilingParams(64, 16, 2), overwrite=True)
    assert gdal.Open(str(out)).RasterXSize == 40


@pytest.mark.parametrize("after_calls", [0, 3])
def test_cancel_leaves_no_output(make_pair, tmp_path, after_calls):
    before, after = make_pair(203, 157)
    out = tmp_path / "prob.tif"
    calls = []

    def is_canceled() -> bool:
        calls.append(1)
        return len(calls) > after_calls

    with RasterPair.open(before, after) as pair:
        with pytest.raises(Canceled):
            run(pair, out, TilingParams(64, 16, 2), callbacks=Callbacks(is_canceled=is_canceled))
    assert len(calls) == after_calls + 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]  # no .partial


def test_predictor_error_leaves_no_output(make_pair, tmp_path):
    before, after = make_pair(100, 80)
    out = tmp_path / "prob.tif"

    def broken(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with RasterPair.open(before, after) as pair:
        with pytest.raises(RuntimeError, match="boom"):
            predict_pair(pair, broken, compute_stretch(pair), out, TilingParams(64), CPU, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]
