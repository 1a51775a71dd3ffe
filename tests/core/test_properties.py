"""Property-based tests (hypothesis): window and tile arithmetic, blending, polygonize, metrics.

Each property is checked on random inputs drawn by hypothesis; the example counts are kept small
so the whole file runs in seconds on two cores.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from osgeo import gdal, ogr

from core.data.tiles import MIN_EDGE_FRACTION, TileSpec
from core.detect.tiled import blend_weight
from core.eval.metrics import ConfusionMatrix
from core.io.windows import axis_starts, block_windows, sliding_windows
from core.vector.vectorize import VectorizeParams, vectorize

gdal.UseExceptions()
ogr.UseExceptions()
FAST = settings(max_examples=60, deadline=None)


def coverage(windows, width: int, height: int) -> np.ndarray:
    """How many windows cover each pixel."""
    count = np.zeros((height, width), dtype=np.int32)
    for w in windows:
        count[w.slices] += 1
    return count


# --- windows --------------------------------------------------------------------------------


@FAST
@given(length=st.integers(1, 600), size=st.integers(1, 128), data=st.data())
def test_axis_starts_cover_the_axis_without_gaps_or_overflow(length, size, data):
    stride = data.draw(st.integers(1, size), label="stride")
    starts = axis_starts(length, size, stride)
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert all(s + min(size, length) <= length for s in starts)  # never past the end
    assert starts[-1] + min(size, length) == length  # the last window ends at the edge
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))  # no gap between windows


@FAST
@given(width=st.integers(1, 200), height=st.integers(1, 200), data=st.data())
def test_sliding_windows_cover_every_pixel_inside_the_raster(width, height, data):
    size = data.draw(st.integers(1, 96), label="size")
    stride = data.draw(st.integers(1, size), label="stride")
    windows = sliding_windows(width, height, size, stride)
    assert all(w.col >= 0 and w.row >= 0 for w in windows)
    assert all(w.col_end <= width and w.row_end <= height for w in windows)
    assert coverage(windows, width, height).min() >= 1


@FAST
@given(width=st.integers(1, 300), height=st.integers(1, 300), size=st.integers(1, 128))
def test_block_windows_partition_the_raster(width, height, size):
    windows = block_windows(width, height, size)
    assert (coverage(windows, width, height) == 1).all()
    assert sum(w.width * w.height for w in windows) == width * height


@FAST
@given(a=st.tuples(*[st.integers(-50, 50)] * 2, *[st.integers(1, 60)] * 2), data=st.data())
def test_window_intersection_is_the_common_pixels(a, data):
    from core.io.windows import Window

    b = data.draw(st.tuples(*[st.integers(-50, 50)] * 2, *[st.integers(1, 60)] * 2), label="b")
    wa, wb = Window(*a), Window(*b)
    meet = wa.intersection(wb)

    def pixels(w):
        return {(r, c) for r in range(w.row, w.row_end) for c in range(w.col, w.col_end)}

    common = pixels(wa) & pixels(wb)
    assert (pixels(meet) if meet else set()) == common
    assert wa.intersection(wb) == wb.intersection(wa)


# --- tiles ----------------------------------------------------------------------------------


@FAST
@given(width=st.integers(1, 400), height=st.integers(1, 400), size=st.integers(8, 128))
def test_tiles_without_stride_cover_each_pixel_at_most_once_and_miss_only_a_sliver(
    width, height, size
):
    spec = TileSpec(width, height, size)
    tiles = spec.tiles()
    count = coverage([t.window for t in tiles], width, height)
    assert count.max() == 1
    assert [t.tile_id for t in tiles] == list(range(len(tiles)))
    assert len(tiles) == spec.rows * spec.cols
    for t in tiles:
        assert t.tile_id == t.row * spec.cols + t.col
        assert 0 < t.window.width <= size and 0 < t.window.height <= size
    # Only an edge sliver thinner than MIN_EDGE_FRACTION of a tile is left untiled.
    uncovered_cols = np.flatnonzero(count.max(axis=0) == 0)
    uncovered_rows = np.flatnonzero(count.max(axis=1) == 0)
    for uncovered, length in ((uncovered_cols, width), (uncovered_rows, height)):
        if uncovered.size:
            assert uncovered.min() > 0 and uncovered.max() == length - 1
            assert uncovered.size < min(size, length) * MIN_EDGE_FRACTION


@FAST
@given(width=st.integers(8, 300), height=st.integers(8, 300), data=st.data())
def test_overlapping_tiles_stay_inside_the_raster(width, height, data):
    size = data.draw(st.integers(8, 96), label="size")
    stride = data.draw(st.integers(1, size), label="stride")
    tiles = TileSpec(width, height, size, stride).tiles()
    assert all(t.window.col_end <= width and t.window.row_end <= height for t in tiles)
    assert len({(t.window.col, t.window.row) for t in tiles}) == len(tiles)


# --- blending -------------------------------------------------------------------------------


@FAST
@given(rows=st.integers(1, 300), cols=st.integers(1, 300))
def test_blend_weight_is_positive_symmetric_and_peaks_in_the_centre(rows, cols):
    weight = blend_weight(rows, cols)
    assert weight.shape == (rows, cols) and weight.dtype == np.float32
    assert (weight > 0).all() and (weight <= 1).all()
    np.testing.assert_allclose(weight, weight[::-1, :], rtol=1e-6)
    np.testing.assert_allclose(weight, weight[:, ::-1], rtol=1e-6)
    centre = weight[(rows - 1) // 2 : rows // 2 + 1, (cols - 1) // 2 : cols // 2 + 1]
    assert np.isclose(centre.max(), weight.max())


@FAST
@given(
    length=st.integers(1, 400),
    size=st.integers(4, 128),
    fraction=st.floats(0.0, 0.75),
    values=st.lists(st.floats(0, 1), min_size=1, max_size=40),
)
def test_blending_overlapping_windows_is_a_weighted_mean(length, size, fraction, values):
    """Blending reproduces a constant map and stays within the windows' values elsewhere."""
    stride = max(1, round(size * (1 - fraction)))
    starts = axis_starts(length, size, stride)
    window = min(size, length)
    ramp = blend_weight(1, window)[0].astype(np.float64)
    total, weights = np.zeros(length), np.zeros(length)
    constant = np.zeros(length)
    probs = [values[i % len(values)] for i in range(len(starts))]
    for start, p in zip(starts, probs):
        total[start : start + window] += p * ramp
        constant[start : start + window] += 0.3 * ramp
        weights[start : start + window] += ramp
    assert (weights > 0).all()  # every pixel receives a positive total weight
    np.testing.assert_allclose(constant / weights, 0.3, rtol=1e-9)
    blended = total / weights
    assert blended.min() >= min(probs) - 1e-9 and blended.max() <= max(probs) + 1e-9


# --- polygonize -----------------------------------------------------------------------------


def write_mask_raster(path: Path, values: np.ndarray, pixel: float, nodata=None) -> Path:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), values.shape[1], values.shape[0], 1, 6)
    ds.SetGeoTransform((1000.0, pixel, 0.0, 5000.0, 0.0, -pixel))
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.WriteArray(values.astype(np.float32))
    ds = None
    return path


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    seed=st.integers(0, 2**31 - 1),
    density=st.floats(0.0, 1.0),
    pixel=st.sampled_from([0.5, 1.0, 10.0, 30.0]),
    connectivity=st.sampled_from([4, 8]),
    threshold=st.floats(0.05, 0.95),
)
def test_polygon_area_equals_the_thresholded_pixel_area(
    tmp_path, shape, seed, density, pixel, connectivity, threshold
):
    rng = np.random.default_rng(seed)
    values = np.where(rng.random(shape) < density, rng.random(shape), 0.0)
    nodata = rng.random(shape) < 0.1
    values = np.where(nodata, -1.0, values)
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    prob = write_mask_raster(case / "p.tif", values, pixel, nodata=-1.0)
    params = VectorizeParams(threshold=threshold, connectivity=connectivity)
    result = vectorize(prob, case / "out.gpkg", params)
    expected = int(((values >= threshold) & ~nodata).sum()) * pixel * pixel
    assert result.total_area == pytest.approx(expected, rel=1e-9, abs=1e-9)
    ds = ogr.Open(str(case / "out.gpkg"))
    layer = ds.GetLayer(0)
    areas = [f.GetGeometryRef().GetArea() for f in layer]
    assert len(areas) == result.count
    assert sum(areas) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert all(a > 0 for a in areas)


# --- metrics --------------------------------------------------------------------------------

masks = st.tuples(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**31 - 1))


def random_masks(shape_seed):
    rows, cols, seed = shape_seed
    rng = np.random.default_rng(seed)
    return (
        rng.random((rows, cols)) < rng.random(),
        rng.random((rows, cols)) < rng.random(),
        rng.random((rows, cols)) < 0.9,
    )


@FAST
@given(case=masks)
def test_confusion_matrix_counts_every_valid_pixel_once(case):
    pred, label, valid = random_masks(case)
    m = ConfusionMatrix().update(pred, label, valid)
    assert m.total == int(valid.sum())
    assert m.tp == int((pred & label & valid).sum())
    assert m.fp == int((pred & ~label & valid).sum())
    assert m.fn == int((~pred & label & valid).sum())
    for value in (m.precision, m.recall, m.f1, m.iou, m.oa, m.f1_unchanged):
        assert 0.0 <= value <= 1.0
    assert -1.0 <= m.kappa <= 1.0
    assert m.iou <= m.f1 + 1e-12  # IoU = F1 / (2 - F1) never exceeds F1
    if m.tp:
        assert m.f1 == pytest.approx(2 * m.precision * m.recall / (m.precision + m.recall))
        assert m.iou == pytest.approx(m.f1 / (2 - m.f1))


@FAST
@given(first=masks, second=masks)
def test_confusion_matrices_add_like_pooled_pixels(first, second):
    a, b = random_masks(first), random_masks(second)
    pooled = ConfusionMatrix().update(a[0], a[1], a[2]).update(b[0], b[1], b[2])
    summed = ConfusionMatrix().update(*a) + ConfusionMatrix().update(*b)
    assert pooled == summed


@FAST
@given(case=masks)
def test_perfect_and_swapped_predictions(case):
    _, label, valid = random_masks(case)
    perfect = ConfusionMatrix().update(label, label, valid)
    assert perfect.fp == perfect.fn == 0 and perfect.oa == (1.0 if perfect.total else 0.0)
    pred = np.random.default_rng(case[2] + 1).random(label.shape) < 0.5
    m = ConfusionMatrix().update(pred, label, valid)
    inverted = ConfusionMatrix().update(~pred, ~label, valid)
    # Swapping which class counts as changed swaps tp with tn, fp with fn, keeps OA and kappa.
    assert (inverted.tp, inverted.tn, inverted.fp, inverted.fn) == (m.tn, m.tp, m.fn, m.fp)
    assert inverted.oa == m.oa and inverted.kappa == pytest.approx(m.kappa)
    assert inverted.f1 == m.f1_unchanged
