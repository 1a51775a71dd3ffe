"""Tests of the ``kdmsi perf`` harness on tiny generated inputs (``--quick``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from osgeo import gdal

from core.cli.main import main
from core.perf.inputs import make_pair
from core.perf.overviews import make_probability, run_overviews
from core.perf.report import END, START, _memory, replace_section
from core.perf.report import markdown as report_markdown
from core.perf.vectorization import make_sparse
from core.vector.vectorize import VectorizeParams, vectorize

OLD_SECTION = (
    f"# Benchmarks\n\nAccuracy table stays.\n\n{START}\nold perf numbers\n{END}\n\nTail.\n"
)


def run_perf(tmp_path, *only: str) -> dict:
    out = tmp_path / "perf.json"
    status = main(["perf", "--quick", "--work", str(tmp_path / "work"), "--out", str(out),
                   "--markdown", str(tmp_path / "BENCHMARKS.md"), "--only", *only])  # fmt: skip
    assert status == 0
    return json.loads(out.read_text())


def test_section_is_replaced_not_appended(tmp_path):
    if shutil.which("gdal_polygonize.py") is None:
        pytest.skip("gdal_polygonize.py (gdal-bin) is not installed")
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(OLD_SECTION)
    results = run_perf(tmp_path, "vectorization")
    assert markdown.read_text() == OLD_SECTION  # a partial run would drop the other rows
    for _ in range(2):  # what a run of every benchmark does with the section
        replace_section(markdown, report_markdown(results))
        text = markdown.read_text()
        assert text.count(START) == text.count(END) == 1
        assert text.startswith("# Benchmarks\n\nAccuracy table stays.\n\n" + START)
        assert text.endswith(END + "\n\nTail.\n")
        assert "old perf numbers" not in text
        assert "### Vectorization of a 200 x 200 px mask" in text
    assert results["command"].startswith("kdmsi perf --quick --work ")
    assert results["machine"]["cores"] >= 1 and results["machine"]["torch"]
    vectorization = results["vectorization"]
    assert set(vectorization["formats"]) == {"gpkg", "shp"}
    sparse = vectorization["sparse"]
    cases = [*vectorization["formats"].values(), vectorization["probability_shp"],
             vectorization["probability_gpkg"], sparse["probability_shp"],
             sparse["probability_gpkg"], sparse["plain_shp"]]  # fmt: skip
    for case in cases:
        assert case["same_count"] and case["same_area"]
        assert case["kdmsi_count"] == case["gdal_count"] > 4
        assert case["kdmsi_median_s"] > 0 and case["gdal_median_s"] > 0
        assert case["kdmsi_peak_rss_mb"] > 10  # a real process's high-water mark
    assert sparse["probability_shp"]["kdmsi_count"] == sparse["blobs"] == 5
    assert "Sparse change: a 320 x 320 px float32 probability with 5 change blobs" in text
    assert "written by another tool (no block maxima) -> .shp" in text
    assert "inference" not in results


def test_sparse_case_has_one_polygon_per_blob_and_a_nodata_strip(tmp_path):
    prob, mask = make_sparse(tmp_path, 300, 6)
    assert make_sparse(tmp_path, 300, 6) == (prob, mask)  # reused
    values = gdal.Open(str(prob)).ReadAsArray()
    change = gdal.Open(str(mask)).ReadAsArray()
    assert np.array_equal(change, (values >= 0.5).astype(np.uint8))
    assert (values[:, :18] == -1).all() and values[:, 18:].min() >= 0
    assert gdal.Open(str(prob)).GetRasterBand(1).GetNoDataValue() == -1
    result = vectorize(prob, tmp_path / "blobs.gpkg", VectorizeParams(connectivity=8))
    assert result.count == 6
    assert result.total_area == pytest.approx(int(change.sum()) * 0.25)


def test_markers_appended_to_a_file_without_them(tmp_path):
    markdown = tmp_path / "B.md"
    markdown.write_text("# Benchmarks\n")
    replace_section(markdown, "first")
    replace_section(markdown, "second")
    assert markdown.read_text() == f"# Benchmarks\n\n{START}\nsecond\n{END}\n"


def test_inference_naive_loop_matches_public_path(tmp_path):
    results = run_perf(tmp_path, "inference")
    inference = results["inference"]
    assert (inference["width"], inference["height"]) == (64, 64)
    assert inference["variants"] == ["public", "fp32", "onnx", "naive"]  # onnxruntime is here
    for mode in ("single", "msi"):
        numbers = inference["modes"][mode]
        differences = numbers["max_abs_difference_to_fp32"]
        # a pair smaller than one window: every path computes the same map in float32 (the naive
        # one slowly); the default precision (bfloat16 where the CPU has it) stays close
        assert differences["naive"] < 1e-4 and differences["onnx"] < 1e-4
        assert differences["public"] < 0.1
        assert numbers["public_mp_per_s"] == pytest.approx(
            inference["megapixels"] / numbers["public_median_s"]
        )
        assert numbers["onnx_speedup_over_fp32"] == pytest.approx(
            numbers["fp32_median_s"] / numbers["onnx_median_s"]
        )
    assert inference["predicted_msi_over_single_with_flips"] == pytest.approx(13.625)
    text = report_markdown(results)  # what a run of every benchmark writes for these rows
    assert "### Inference throughput (64 x 64 px pair" in text
    assert "`detect --engine torch --precision fp32`" in text  # the baseline row is torch


def test_generated_pair_is_georeferenced_and_reused(tmp_path):
    paths = make_pair(tmp_path, 300, seed=3, development=0.5)
    stamp = paths.before.stat().st_mtime_ns
    before = gdal.Open(str(paths.before))
    assert (before.RasterXSize, before.RasterYSize, before.RasterCount) == (300, 300, 3)
    assert before.GetSpatialRef().GetAuthorityCode(None) == "32633"
    label = gdal.Open(str(paths.label)).ReadAsArray()
    assert set(np.unique(label)) == {0, 255}
    a = before.ReadAsArray().astype(int)
    b = gdal.Open(str(paths.after)).ReadAsArray().astype(int)
    changed = label > 0
    # the change is where the after image differs most
    assert (
        np.abs(b - a).mean(axis=0)[changed].mean() > 2 * np.abs(b - a).mean(axis=0)[~changed].mean()
    )
    assert make_pair(tmp_path, 300, seed=3, development=0.5) == paths
    assert paths.before.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".*partial"))


def test_overview_build_is_timed_on_a_reused_probability_stand_in(tmp_path):
    source = make_probability(tmp_path, 600)
    stamp = source.stat().st_mtime_ns
    dataset = gdal.Open(str(source))
    assert dataset.GetRasterBand(1).GetOverviewCount() == 0
    dataset = None
    (row,) = run_overviews(tmp_path, [600])["rows"]
    assert row["levels"] == [2, 4]  # 600 -> 300 -> 150
    assert 0 < row["build_s"] < 60 and row["peak_rss_mb"] > 10
    assert row["with_overviews_mb"] > row["file_mb"] > 0
    assert 10 < row["increase_pct"] < 50  # the pyramid holds about a third of the pixels
    assert source.stat().st_mtime_ns == stamp  # measured on a copy, which is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
    memory = {"rows": [], "target_mb": 1536, "all_under_target": True}
    text = "\n".join(_memory({**memory, "overviews": {"rows": [row], "resampling": "AVERAGE",
                                                      "compression": "DEFLATE"}}))  # fmt: skip
    assert "#### Internal overviews of the probability output" in text
    assert "| 600 | 2, 4 |" in text


@pytest.mark.slow
def test_quick_run_of_every_benchmark(tmp_path):
    results = run_perf(tmp_path, "inference", "memory", "vectorization", "training", "flops")
    memory = results["memory"]["rows"]
    assert [(r["size"], r["method"]) for r in memory] == [
        (96, "kdmsi"),
        (128, "kdmsi"),
        (96, "cva"),
    ]
    assert all(r["complete"] and r["peak_rss_mb"] > 10 for r in memory)
    assert [r["size"] for r in results["memory"]["overviews"]["rows"]] == [600]
    (training,) = results["training"]["rows"]
    assert training["tile"] == 64 and training["steps"] >= 1 and training["peak_rss_mb"] > 10
    flops = results["flops"]
    assert flops["flop_ratio_msi_over_single"] == pytest.approx(13.6, rel=0.05)
    assert 0 < flops["single_fraction_of_peak"] < 1
    text = (tmp_path / "BENCHMARKS.md").read_text()
    for title in ("Inference", "Peak memory", "Vectorization", "Training", "Arithmetic bound"):
        assert f"### {title}" in text
