"""Tests of core.eval.evaluate: scoring change maps against full and partial pixel references."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import KdmsiError
from core.eval.evaluate import evaluate_map


@pytest.fixture
def reference(tmp_path, write_raster):
    """A 20x30 label (0/255) with a 10x10 changed block, and its pixel truth."""
    truth = np.zeros((20, 30), dtype=bool)
    truth[5:15, 10:20] = True
    path = write_raster(tmp_path / "label.tif", (truth * 255).astype(np.uint8))
    return path, truth


def prediction(truth: np.ndarray) -> np.ndarray:
    """A float map that finds 80 of the 100 changed pixels and adds 30 false alarms."""
    prob = np.where(truth, 0.9, 0.1).astype(np.float32)
    prob[5:7, 10:20] = 0.3  # 20 misses
    prob[0:3, 0:10] = 0.7  # 30 false alarms
    return prob


def counts(matrix) -> tuple[int, int, int, int]:
    return matrix.tp, matrix.fp, matrix.fn, matrix.tn


def test_known_counts_of_a_probability_map(tmp_path, write_raster, reference):
    label, truth = reference
    pred = write_raster(tmp_path / "prob.tif", prediction(truth))
    matrix = evaluate_map(pred, label, 0.5)
    assert counts(matrix) == (80, 30, 20, 600 - 130)
    assert matrix.precision == pytest.approx(80 / 110)
    assert matrix.recall == pytest.approx(0.8)
    # the threshold is applied with >=
    assert counts(evaluate_map(pred, label, 0.7)) == (80, 30, 20, 470)
    assert counts(evaluate_map(pred, label, 0.95)) == (0, 0, 100, 500)


def test_nodata_of_prediction_and_label_is_not_scored(tmp_path, write_raster, reference):
    _, truth = reference
    prob = prediction(truth)
    prob[19, :] = -1  # 30 nodata pixels of the prediction, all unchanged and predicted so
    label = (truth * 255).astype(np.uint8)
    label[5, 10:20] = 7  # 10 nodata pixels of the label, changed and predicted 0.3 (misses)
    pred_path = write_raster(tmp_path / "prob.tif", prob, nodata=-1)
    label_path = write_raster(tmp_path / "label7.tif", label, nodata=7)
    matrix = evaluate_map(pred_path, label_path, 0.5)
    assert counts(matrix) == (80, 30, 10, 440)
    assert matrix.total == 600 - 30 - 10


@pytest.mark.parametrize("scale", [1, 255])
def test_byte_masks_of_0_1_and_0_255(tmp_path, write_raster, reference, scale):
    label, truth = reference
    mask = (prediction(truth) >= 0.5).astype(np.uint8) * scale
    pred = write_raster(tmp_path / "mask.tif", mask)
    assert counts(evaluate_map(pred, label, 0.5)) == (80, 30, 20, 470)


def test_0_1_mask_with_nodata_255_is_read_as_0_1(tmp_path, write_raster, reference):
    """The mask written by ``detect`` is 0/1 with nodata 255; nodata must not change the scale."""
    label, truth = reference
    mask = (prediction(truth) >= 0.5).astype(np.uint8)
    mask[19, :] = 255
    pred = write_raster(tmp_path / "mask.tif", mask, nodata=255)
    assert counts(evaluate_map(pred, label, 0.5)) == (80, 30, 20, 440)


def test_partial_reference_scores_only_the_samples(tmp_path, write_raster, reference):
    _, truth = reference
    pred = write_raster(tmp_path / "prob.tif", prediction(truth))
    changed = np.zeros((20, 30), dtype=np.uint8)
    changed[10:15, 10:20] = 255  # 50 changed samples, all found
    changed[5:6, 10:20] = 255  # 10 changed samples, all missed
    unchanged = np.zeros((20, 30), dtype=np.uint8)
    unchanged[0:1, 0:30] = 255  # 30 unchanged samples, 10 of them false alarms
    unchanged[18:20, 0:5] = 255  # 10 unchanged samples, correct
    changed_path = write_raster(tmp_path / "changed.tif", changed)
    unchanged_path = write_raster(tmp_path / "unchanged.tif", unchanged)
    matrix = evaluate_map(pred, changed_path, 0.5, unchanged=unchanged_path)
    assert counts(matrix) == (50, 10, 10, 30)
    assert matrix.total == 100


def test_real_partial_reference_counts_only_sample_pixels(tmp_path, shared_data, write_raster):
    folder = shared_data / "geo_taizhou_landsat" / "label"
    changed = folder / "taizhou_change_samples_0-255.tif"
    unchanged = folder / "taizhou_unchanged_samples_0-255.tif"
    if not (changed.exists() and unchanged.exists()):
        pytest.skip(
            f"real samples not found at {folder}; they live in ../shared/data beside the repository"
        )
    from osgeo import gdal

    ds = gdal.Open(str(changed))
    positive = ds.ReadAsArray() > 0
    negative = gdal.Open(str(unchanged)).ReadAsArray() > 0
    pred = write_raster(
        tmp_path / "all_changed.tif",
        np.ones((ds.RasterYSize, ds.RasterXSize), dtype=np.float32),
        geotransform=ds.GetGeoTransform(),
        crs=ds.GetProjection(),
    )
    matrix = evaluate_map(pred, changed, 0.5, unchanged=unchanged)
    assert matrix.total == (positive | negative).sum() < positive.size
    assert matrix.tp == positive.sum()
    assert matrix.fn == matrix.tn == 0


@pytest.mark.parametrize("which", ["label", "unchanged"])
def test_size_mismatch_is_a_user_error(tmp_path, write_raster, reference, which):
    label, truth = reference
    pred = write_raster(tmp_path / "prob.tif", prediction(truth))
    small = write_raster(tmp_path / "small.tif", np.zeros((20, 29), dtype=np.uint8))
    args = (small, None) if which == "label" else (label, small)
    with pytest.raises(KdmsiError, match="29x20") as info:
        evaluate_map(pred, args[0], 0.5, unchanged=args[1])
    assert str(small) in str(info.value)


def test_missing_prediction_is_a_user_error(tmp_path, reference):
    label, _ = reference
    with pytest.raises(KdmsiError, match="does not exist") as info:
        evaluate_map(tmp_path / "none.tif", label, 0.5)
    assert str(tmp_path / "none.tif") in str(info.value)


def test_every_pixel_of_a_large_map_is_scored_once(tmp_path, write_raster):
    # wider than one 1024-pixel processing block and not a multiple of it
    width, height = 1100, 3
    truth = np.zeros((height, width), dtype=bool)
    truth[:, 500:600] = True
    label = write_raster(tmp_path / "label.tif", (truth * 255).astype(np.uint8))
    pred = write_raster(tmp_path / "prob.tif", np.where(truth, 0.9, 0.1).astype(np.float32))
    matrix = evaluate_map(pred, label, 0.5)
    assert matrix.total == width * height
    assert counts(matrix) == (300, 0, 0, width * height - 300)


def test_byte_probability_scale_is_decided_for_the_whole_map(tmp_path, write_raster):
    # an 8-bit probability whose last block holds only 0 and 1 (1/255, not change)
    prob = np.zeros((2, 2100), dtype=np.uint8)
    prob[:, :10] = 200
    prob[:, 2048:] = 1
    label = write_raster(tmp_path / "label.tif", (prob > 127).astype(np.uint8))
    pred = write_raster(tmp_path / "prob.tif", prob)
    assert counts(evaluate_map(pred, label, 0.5)) == (20, 0, 0, 2 * 2100 - 20)
