"""Tests of core.vector.components and core.vector.labelling: change components, chunk by chunk.

The components are checked against a plain flood fill, and vectorize's labelled path against
GDAL Polygonize of the same mask, with chunks of a few rows and windows of a few label blocks
so that components cross chunk and window boundaries (U shapes merge late).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from core.vector import labelling, polygonize
from core.vector.components import label_chunk, paint, pixel_index, smallest_connected
from core.vector.polygonize import float32_at_least, open_source
from core.vector.tag_rules import TagRules
from core.vector.vectorize import VectorizeParams, vectorize

NEIGHBOURS = {
    4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
    8: tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc),
}


def flood_fill(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Reference labels: 1, 2, ... by breadth-first search in scan order, 0 off the mask."""
    labels = np.zeros(mask.shape, np.int64)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        queue = deque([start])
        while queue:
            row, col = queue.popleft()
            for dr, dc in NEIGHBOURS[connectivity]:
                r, c = row + dr, col + dc
                inside = 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]
                if inside and mask[r, c] and not labels[r, c]:
                    labels[r, c] = count
                    queue.append((r, c))
    return labels


def chunked_labels(mask: np.ndarray, rows: int, connectivity: int) -> np.ndarray:
    """Label ``mask`` chunk by chunk as vectorize does, then merge across the chunks."""
    out = np.zeros(mask.shape, np.int64)
    above, next_label, pairs = None, 1, [np.empty((2, 0), np.int64)]
    for row in range(0, mask.shape[0], rows):
        chunk = mask[row : row + rows]
        result = label_chunk(chunk, next_label, connectivity, above)
        index = pixel_index(result.runs, chunk.shape[1])
        labels = np.repeat(result.runs.labels, result.runs.lengths)
        out[row : row + chunk.shape[0]] = paint(index, labels, chunk.shape)
        pairs.append(result.pairs)
        next_label += result.count
        above = result.runs.last_row(chunk.shape[0] - 1)
    merged = np.concatenate(pairs, axis=1)
    return smallest_connected(next_label, merged[0], merged[1])[out]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the same pixels into the same components."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_match_a_flood_fill_whatever_the_chunks(connectivity):
    rng = np.random.default_rng(7)
    for _ in range(30):
        shape = tuple(rng.integers(1, 40, 2))
        mask = rng.random(shape) < rng.uniform(0.2, 0.7)
        reference = flood_fill(mask, connectivity)
        for rows in (1, 2, 5, 64):
            assert same_partition(reference, chunked_labels(mask, rows, connectivity))


def test_a_u_shape_merges_in_its_last_row():
    mask = np.zeros((6, 7), bool)
    mask[0:5, 1] = mask[0:5, 5] = True
    mask[5, 1:6] = True  # the bottom joins both arms, two chunks below their top
    labels = chunked_labels(mask, 2, 4)
    assert len(np.unique(labels[mask])) == 1
    assert labels[0, 1] == labels[0, 5]


def test_smallest_connected_names_each_component_after_its_smallest_node():
    roots = smallest_connected(7, np.array([6, 5, 3, 2]), np.array([5, 1, 2, 0]))
    assert roots.tolist() == [0, 1, 0, 0, 4, 1, 1]


@pytest.mark.parametrize("threshold", [0.1, 0.3, 1 / 3, 0.5, 0.7, -0.2, 1e-40, 1e300, -1e300])
def test_float32_threshold_picks_the_float64_pixels(threshold):
    rng = np.random.default_rng(1)
    values = rng.normal(0.3, 0.4, 20000).astype(np.float32)
    near = np.float32(np.clip(threshold, -3e38, 3e38))
    values[:3] = [near, np.nextafter(near, np.float32(-np.inf)), np.nextafter(near, np.inf)]
    expected = values.astype(np.float64) >= threshold
    assert np.array_equal(values >= float32_at_least(threshold), expected)


def test_the_nodata_mask_is_read_only_when_it_can_hide_change(tmp_path, write_raster):
    prob = np.zeros((4, 4), np.float32)
    below = open_source(write_raster(tmp_path / "a.tif", prob, nodata=-1.0))
    assert not below.mask_hides(0.5)
    assert below.mask_hides(-1.0) and below.mask_hides(-2.0)
    nan = open_source(write_raster(tmp_path / "b.tif", prob, nodata=float("nan")))
    assert not nan.mask_hides(0.5)
    plain = open_source(write_raster(tmp_path / "c.tif", prob))
    assert not plain.mask_hides(0.5)


def test_tag_rules_on_a_window_match_the_full_width(tmp_path):
    from core.io.windows import Window

    rules = [TagRules([(0, Window(4, 2, 6, 6))], [(1, Window(12, 0, 8, 8))]) for _ in range(2)]
    mask = np.ones((8, 24), bool)
    full = mask.copy()
    rules[0].apply(full, 0)
    window = mask[:, 3:20].copy()
    rules[1].apply(window, 0, 3)
    assert np.array_equal(window, full[:, 3:20])
    assert rules[0].cleared == rules[1].cleared == {0}
    assert rules[0].change_pixels == rules[1].change_pixels == {1: 64}


def scattered_mask() -> np.ndarray:
    """Specks, a U shape, a ring and a bar over label-block windows with empty blocks between.

    Label blocks are 256 px wide: block 2 (columns 512-767) is empty but in the rows of the bar,
    so most chunks are worked on in two windows and the bar joins them in a few.
    """
    rng = np.random.default_rng(3)
    mask = np.zeros((60, 1100), bool)
    mask[:, :512] = rng.random((60, 512)) < 0.45
    mask[5:50, 800:806] = mask[5:50, 840:846] = True  # a U whose bottom comes late
    mask[50:54, 800:846] = True
    mask[10:40, 1040:1090] = True  # a ring with a hole
    mask[20:30, 1055:1075] = False
    mask[30:33, 400:804] = True  # a bar from the specks to the U, across the empty block
    return mask


@pytest.mark.parametrize(("connectivity", "suffix"), [(4, ".shp"), (8, ".gpkg")])
def test_labelled_polygons_equal_gdal_polygonize_of_the_mask(
    tmp_path, monkeypatch, write_raster, connectivity, suffix
):
    mask = scattered_mask()
    prob = np.where(mask, 0.6 + 0.4 * np.random.default_rng(4).random(mask.shape), 0.2)
    prob = prob.astype(np.float32)
    floats = write_raster(tmp_path / "p.tif", prob)
    byte = write_raster(tmp_path / "m.tif", mask.astype(np.uint8))
    monkeypatch.setattr(polygonize, "_TARGET_CHUNK_PIXELS", 7 * mask.shape[1])
    assert len(polygonize.row_chunks(open_source(floats), labelling._BLOCK)) > 5
    assert labelling._column_windows(mask[10:18]) == [(0, 512), (768, 1100)]
    params = VectorizeParams(connectivity=connectivity)
    ours = vectorize(floats, tmp_path / f"ours{suffix}", params)
    theirs = vectorize(byte, tmp_path / f"gdal{suffix}", params)  # Polygonize of the mask
    assert ours.count == theirs.count > 50
    assert ours.total_area == theirs.total_area
    ours_features = read(tmp_path / f"ours{suffix}")
    gdal_features = read(tmp_path / f"gdal{suffix}")
    assert [f[0] for f in ours_features] == [f[0] for f in gdal_features]  # same WKB, same order
    reference = flood_fill(mask, connectivity)
    expected = sorted(
        (int((reference == k).sum()), prob[reference == k].astype(np.float64).max())
        for k in range(1, reference.max() + 1)
    )
    pixel = 10.0 * 10.0
    found = sorted((round(f[1] / pixel), f[3]) for f in ours_features)
    assert [size for size, _ in found] == [size for size, _ in expected]
    assert [top for _, top in found] == pytest.approx([top for _, top in expected], rel=1e-14)
    for k in range(1, reference.max() + 1, 17):
        values = prob[reference == k].astype(np.float64)
        match = [f for f in ours_features if round(f[1] / pixel) == values.size]
        assert any(f[2] == pytest.approx(values.mean(), rel=1e-12) for f in match)


def read(path: Path) -> list[tuple[bytes, float, float, float]]:
    """``(WKB, area, mean_prob, max_prob)`` of every feature, in order."""
    dataset = ogr.Open(str(path))
    return [
        (
            bytes(f.GetGeometryRef().ExportToWkb()),
            f.GetField("area"),
            f.GetField("mean_prob"),
            f.GetField("max_prob"),
        )
        for f in dataset.GetLayer(0)
    ]


def test_a_sparse_label_raster_stays_sparse(tmp_path, write_raster):
    prob = np.zeros((1024, 1024), np.float32)
    prob[600:610, 700:720] = 0.9
    source = open_source(write_raster(tmp_path / "p.tif", prob))
    from core.callbacks import Callbacks

    labels = labelling.label_raster(source, (0.5, 4), tmp_path / "l.tif", Callbacks())
    raster, stats = labels.raster, labels.stats
    band = raster.GetRasterBand(1)
    blocks = [
        band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF") for x in range(4) for y in range(4)
    ]
    assert sum(offset is not None for offset in blocks) == 1  # only the block with change
    assert int(stats.counts.sum()) == 200 and stats.maxima.max() == pytest.approx(0.9)
    assert labels.boxes == {1: (600, 700, 610, 720)}
    del raster, labels
    gdal.Unlink(str(tmp_path / "l.tif"))
