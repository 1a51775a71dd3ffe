"""Tests of ``vectorize``'s peak ratio: a change region is kept only where it is clearly strong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_vectorize import read, write_tif

from core.cli.main import main
from core.errors import KdmsiError
from core.vector.components import strong_regions
from core.vector.vectorize import VectorizeParams, vectorize


def region_peaks(values: np.ndarray, threshold: float) -> list[float]:
    """The largest value of each 4-connected region of ``values >= threshold`` (a flood fill)."""
    mask, peaks = values >= threshold, []
    seen = np.zeros_like(mask)
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, top = [start], -np.inf
        seen[start] = True
        while stack:
            r, c = stack.pop()
            top = max(top, float(values[r, c]))
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                inside = 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1]
                if inside and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    stack.append((rr, cc))
        peaks.append(top)
    return peaks


def blobs(seed: int, size: int = 48) -> np.ndarray:
    """A smooth map in [0, 1] with regions of many strengths around 0.3-0.5."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 6, size // 6))
    values = np.kron(coarse, np.ones((6, 6))) * 0.5  # 6 x 6 squares of 0..0.5
    return (values + rng.random((size, size)) * 0.05).astype(np.float32)


@pytest.mark.parametrize("kind", ["gpkg", "shp", "simplified"])
def test_regions_whose_strongest_pixel_misses_the_peak_get_no_polygon(tmp_path, kind):
    values = blobs(1)
    src = write_tif(tmp_path / "p.tif", values)
    peaks = region_peaks(values, 0.3)
    weak = sum(p < 0.375 for p in peaks)
    assert len(peaks) - weak > 0 and weak > 0  # both kinds of region are there
    suffix = ".shp" if kind == "shp" else ".gpkg"
    simplify = 0.01 if kind == "simplified" else 0.0
    for ratio, expected in ((1.0, len(peaks)), (1.25, len(peaks) - weak)):
        out = tmp_path / f"r{ratio}{suffix}"
        params = VectorizeParams(0.3, simplify=simplify, peak_ratio=ratio)
        result = vectorize(src, out, params)
        features = read(out)[0]
        assert result.count == len(features) == expected, ratio
        assert min(f["max_prob"] for f in features) >= 0.3 * ratio - 1e-6
        assert result.total_area == pytest.approx(sum(f["geom"].area for f in features))


def test_strong_regions_are_the_pixels_the_polygons_cover(tmp_path):
    values = blobs(2)
    kept = strong_regions(values, 0.3, 0.375)
    assert 0 < kept.sum() < (values >= 0.3).sum()
    out = tmp_path / "r.gpkg"
    vectorize(write_tif(tmp_path / "p.tif", values), out, VectorizeParams(0.3, peak_ratio=1.25))
    area = sum(f["geom"].area for f in read(out)[0]) / 10.0**2  # pixels of 10 m
    assert area == pytest.approx(kept.sum())
    assert strong_regions(values, 0.3, -np.inf).sum() == (values >= 0.3).sum()
    assert not strong_regions(np.zeros((3, 4), np.float32), 0.3, 0.375).any()


def test_the_peak_is_capped_so_masks_and_certain_regions_stay():
    assert VectorizeParams(0.3, peak_ratio=1.25).peak_cut == pytest.approx(0.375)
    assert VectorizeParams(0.9, peak_ratio=1.25).peak_cut == 1.0
    assert VectorizeParams(0.3).peak_cut == 0.3  # ratio 1: every region
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(KdmsiError, match="peak ratio must be a number of 1 or more"):
            VectorizeParams(0.3, peak_ratio=bad)


def test_a_binary_mask_keeps_every_region_at_the_default_ratio(tmp_path):
    mask = (blobs(3) >= 0.3).astype(np.uint8)
    out = tmp_path / "m.gpkg"
    result = vectorize(
        write_tif(tmp_path / "m.tif", mask), out, VectorizeParams(0.5, peak_ratio=1.25)
    )
    assert result.count == len(region_peaks(mask.astype(np.float32), 0.5))


def test_the_command_leaves_weak_regions_out_by_default_and_says_so(tmp_path, capsys):
    values = blobs(1)
    src = write_tif(tmp_path / "p.tif", values)
    peaks = region_peaks(values, 0.3)
    for extra, expected in (
        ([], sum(p >= 0.375 for p in peaks)),
        (["--peak-ratio", "1"], len(peaks)),
    ):
        out = tmp_path / f"v{len(extra)}.gpkg"
        args = ["vectorize", "--prob", str(src), "--out", str(out), "--threshold", "0.3",
                "--min-pixels", "0", *extra, "--jsonl"]  # fmt: skip
        assert main(args) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        result = next(e for e in events if e["event"] == "result")
        assert result["metrics"]["count"] == expected
        said = "never reaching 0.375" in result["summary"]
        assert said == (not extra), result["summary"]
