"""Tests of core.vector.boxes: sparse change polygonized component by component.

The box-by-box polygons are compared with GDAL Polygonize of the whole label raster (the path
taken when change is dense), on rasters whose components cross chunks, windows and box edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr
from test_components import read  # (WKB, area, mean_prob, max_prob) per feature

from core.vector import boxes, polygonize
from core.vector import vectorize as vectorize_module
from core.vector.components import label_chunk
from core.vector.vectorize import VectorizeParams, vectorize


def sparse_mask() -> np.ndarray:
    """A few components on an empty raster: a ring with a hole, a late U, corner neighbours."""
    mask = np.zeros((90, 700), bool)
    mask[10:40, 20:60] = True  # a ring with a hole
    mask[20:30, 30:45] = False
    mask[5:70, 300:304] = mask[5:70, 330:334] = True  # a U whose bottom comes chunks later
    mask[70:73, 300:334] = True
    mask[50, 500] = mask[51, 501] = True  # corner neighbours: one with 8-connectivity, two with 4
    mask[80:90, 680:700] = True  # on the raster's bottom right edge
    mask[0, 0] = True  # one pixel at the top left corner
    return mask


def top_rows(path: Path) -> list[float]:
    """The top edge (largest y) of every feature's envelope, in the file's order."""
    dataset = ogr.Open(str(path))
    return [f.GetGeometryRef().GetEnvelope()[3] for f in dataset.GetLayer(0)]


@pytest.mark.parametrize(
    ("connectivity", "suffix", "transform"),
    [
        (4, ".shp", (500000.0, 10.0, 0.0, 4600000.0, 0.0, -10.0)),
        (8, ".gpkg", (431.7, 0.3, 0.0, 8012.9, 0.0, -0.3)),
    ],
)
def test_box_polygons_equal_the_whole_raster_scan(
    tmp_path, monkeypatch, write_raster, connectivity, suffix, transform
):
    mask = sparse_mask()
    prob = np.where(mask, 0.6 + 0.4 * np.random.default_rng(1).random(mask.shape), 0.1)
    path = write_raster(tmp_path / "p.tif", prob.astype(np.float32), geotransform=transform)
    monkeypatch.setattr(polygonize, "_TARGET_CHUNK_PIXELS", 9 * mask.shape[1])  # 10 chunks
    calls = []
    monkeypatch.setattr(
        vectorize_module,
        "polygonize_boxes",
        lambda *args: calls.append(len(args[1])) or boxes.polygonize_boxes(*args),
    )
    params = VectorizeParams(connectivity=connectivity)
    by_box = vectorize(path, tmp_path / f"boxes{suffix}", params)
    assert calls == [6 if connectivity == 4 else 5]  # the box path ran, one box per component
    monkeypatch.setattr(vectorize_module, "worth_boxes", lambda *args: False)
    whole = vectorize(path, tmp_path / f"whole{suffix}", params)
    assert by_box.count == whole.count == calls[0]
    assert by_box.total_area == pytest.approx(whole.total_area, rel=1e-12)
    ours, theirs = read(tmp_path / f"boxes{suffix}"), read(tmp_path / f"whole{suffix}")
    if transform[1] == 10.0:  # coordinates exact in binary: the same WKB
        assert sorted(ours) == sorted(theirs)
    else:  # the box's corner is computed first: coordinates may differ in the last bit
        key = lambda f: (f[2], f[3])  # noqa: E731 - mean and max name a component here
        for mine, gdal_s in zip(sorted(ours, key=key), sorted(theirs, key=key)):
            a, b = (ogr.CreateGeometryFromWkb(f[0]) for f in (mine, gdal_s))
            assert a.SymDifference(b).GetArea() < 1e-9 * b.GetArea()
            assert mine[1:] == pytest.approx(gdal_s[1:], rel=1e-12)
    tops = top_rows(tmp_path / f"boxes{suffix}")
    assert tops == sorted(tops, reverse=True)  # top to bottom


def test_ungeoreferenced_rasters_take_the_box_path_too(tmp_path, monkeypatch, write_raster):
    mask = sparse_mask()
    path = write_raster(tmp_path / "p.tif", mask.astype(np.float32), geotransform=None, crs=None)
    by_box = vectorize(path, tmp_path / "boxes.gpkg", VectorizeParams())
    monkeypatch.setattr(vectorize_module, "worth_boxes", lambda *args: False)
    whole = vectorize(path, tmp_path / "whole.gpkg", VectorizeParams())
    assert sorted(read(by_box.path)) == sorted(read(whole.path))
    assert by_box.count == 6


def test_run_boxes_bound_each_label():
    mask = sparse_mask()[:60]
    found = label_chunk(mask, 7, 4)
    found_boxes = boxes.run_boxes(found.runs, found.count, 7, (100, 1000))
    labels = np.zeros(mask.shape, np.int64)
    for row, start, end, label in zip(*(getattr(found.runs, n) for n in
                                         ("rows", "starts", "ends", "labels"))):  # fmt: skip
        labels[row, start:end] = label
    for index, label in enumerate(range(7, 7 + found.count)):
        rows, cols = np.nonzero(labels == label)
        expected = (rows.min() + 100, cols.min() + 1000, rows.max() + 101, cols.max() + 1001)
        assert tuple(found_boxes[index]) == expected


def test_component_boxes_join_the_labels_of_a_component():
    label_boxes = np.array([[0, 0, 0, 0], [5, 10, 8, 20], [8, 2, 12, 11], [0, 50, 1, 51]])
    roots = np.array([0, 1, 1, 3])  # labels 1 and 2 are one component
    assert boxes.component_boxes(label_boxes, roots) == {3: (0, 50, 1, 51), 1: (5, 2, 12, 20)}


def test_many_components_or_large_boxes_take_the_whole_raster_scan():
    few = {1: (0, 0, 10, 10), 2: (20, 20, 30, 30)}
    assert boxes.worth_boxes(few, 100, 100)
    assert not boxes.worth_boxes(None, 100, 100)
    assert not boxes.worth_boxes({1: (0, 0, 60, 60)}, 100, 100)  # 36 % of the raster
    side = int(boxes.MAX_BOX_PIXELS**0.5) + 1  # one box too large to read at once
    assert not boxes.worth_boxes({1: (0, 0, side, side)}, 100 * side, 100 * side)
    many = {k: (0, k, 1, k + 1) for k in range(1, boxes.BOX_LIMIT + 2)}
    assert not boxes.worth_boxes(many, 10**6, 10**6)


def test_labelling_stops_tracking_boxes_past_the_limit(tmp_path, monkeypatch, write_raster):
    from core.callbacks import Callbacks
    from core.vector import labelling

    mask = np.zeros((40, 40), bool)
    mask[::2, ::2] = True  # 400 one-pixel components
    source = polygonize.open_source(write_raster(tmp_path / "p.tif", mask.astype(np.float32)))
    monkeypatch.setattr(labelling, "BOX_LIMIT", 100)
    labels = labelling.label_raster(source, (0.5, 4), tmp_path / "l.tif", Callbacks())
    assert labels.boxes is None and labels.stats.counts[1:].sum() == 400
