"""Tests of the benchmark protocol on a tiny synthetic dataset folder (CPU, seconds)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from osgeo import gdal

from core.callbacks import Callbacks
from core.eval.benchmark import BenchmarkParams, markdown_table, reused_result, run_benchmark
from core.eval.whole_pair import PRODUCT_ROW
from core.train.refinement import RefineParams
from core.train.trainer import TrainParams

gdal.UseExceptions()
PROJECT_ROOT = Path(__file__).resolve().parents[3]
METHODS = [
    "CVA (Otsu)",
    "CAM (teacher only)",
    "KD-MSI single-scale",
    "KD-MSI + MSI",
    "KD-MSI + MSI + CVA",
    "KD-MSI refined",
    "KD-MSI + MSI, detect on whole pairs",
    "KD-MSI + MSI + CVA, detect on whole pairs",
    "KD-MSI refined, detect on whole pairs",
    PRODUCT_ROW,
]
SCORES = ("precision", "recall", "f1", "iou", "oa", "kappa")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, write_family):
    """Two 64 px GeoTIFF pairs: 4 of their 8 tiles hold a new bright square."""
    return write_family(tmp_path_factory.mktemp("bench") / "tiny", seed=10)


PARAMS = BenchmarkParams(
    tile=32,
    train_fraction=0.5,
    seed=0,
    train=TrainParams(backbone="efficientnet-lite0", pretrained=False, epochs=1, batch_size=4),
    refine=RefineParams(epochs=1, batch_size=4),
    scales=(1.0, 2.0),
)


@pytest.fixture(scope="module")
def results(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bench_run")
    logs = []
    callbacks = Callbacks(log=lambda level, m: logs.append((level, m)))
    return run_benchmark([dataset], PARAMS, run_dir, torch.device("cpu"), callbacks), run_dir, logs


def test_a_finished_model_is_scored_again_without_training(results, dataset):
    result, run_dir, _ = results
    logs = []
    callbacks = Callbacks(log=lambda level, m: logs.append(m))
    again = run_benchmark(
        [dataset], replace(PARAMS, reuse=True), run_dir, torch.device("cpu"), callbacks
    )
    assert any("Reusing the finished model" in m for m in logs)
    assert not any(m.startswith("Epoch") for m in logs)
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in result["rows"]]
    assert again["training"]["selected_epoch"] == result["training"]["selected_epoch"]
    assert math.isnan(again["training"]["seconds"])
    assert reused_result(run_dir, epochs=99).epochs == PARAMS.train.epochs  # what it ran


def test_every_method_is_scored(results):
    result, run_dir, _ = results
    assert [row["method"] for row in result["rows"]] == METHODS
    for row in result["rows"]:
        for key in SCORES:
            assert 0.0 <= row["metrics"][key] <= 1.0 or key == "kappa", (row["method"], key)
        assert -1.0 <= row["metrics"]["kappa"] <= 1.0
        assert 0.0 <= row["best_f1"] <= 1.0
        assert row["best_f1"] >= row["metrics"]["f1"] - 1e-9
        assert row["seconds"] >= 0
        assert (
            row["metrics"]["tp"]
            + row["metrics"]["fp"]
            + row["metrics"]["fn"]
            + row["metrics"]["tn"]
            == 4 * 32 * 32
        )
    assert (run_dir / "model.pt").is_file()
    assert result["training"]["selected_epoch"] == 1
    assert result["wall_seconds"] > 0


def test_whole_pair_rows_score_the_maps_detect_wrote(results):
    result, run_dir, _ = results
    for method in ("kdmsi", "kdmsi-cva", "kdmsi-refined"):
        maps = sorted(p.name for p in (run_dir / "detect" / method).glob("*.tif"))
        assert maps == [f"tiny_p0_{method}.tif", f"tiny_p1_{method}.tif"]
    rows = {row["method"]: row for row in result["rows"]}
    msi_threshold = rows["KD-MSI + MSI"]["threshold"]
    assert rows["KD-MSI + MSI, detect on whole pairs"]["threshold"] == msi_threshold
    assert rows["KD-MSI refined, detect on whole pairs"]["threshold"] == 0.5
    fused_threshold = rows["KD-MSI + MSI + CVA"]["threshold"]
    assert rows["KD-MSI + MSI + CVA, detect on whole pairs"]["threshold"] == fused_threshold
    assert fused_threshold != msi_threshold  # its own threshold, chosen on the combined map


def test_the_product_row_is_the_map_auto_chose(results):
    result, _, logs = results
    rows = {row["method"]: row for row in result["rows"]}
    # 2 + 2 training tags leave none to hold out: auto keeps the trained (here refined) network
    assert result["training"]["method_choice"]["method"] == "kdmsi-cva"
    assert "no tags were held out" in result["training"]["method_choice"]["reason"]
    assert any("could not be checked" in m for _, m in logs)
    product, refined = rows[PRODUCT_ROW], rows["KD-MSI refined, detect on whole pairs"]
    assert product["metrics"] == refined["metrics"] and product["threshold"] == 0.5


def test_test_tiles_are_stratified_and_counted(results):
    result, _, _ = results
    assert result["data"]["tiles"] == 8 and result["data"]["tile_size"] == 32
    assert result["data"]["train"] == {"changed": 2, "unchanged": 2}
    assert result["data"]["test"] == {"changed": 2, "unchanged": 2}
    changed_pixels = 2 * 12 * 14
    assert result["data"]["test_changed_pixel_fraction"] == pytest.approx(
        changed_pixels / (4 * 32 * 32)
    )


def test_cva_finds_the_bright_squares(results):
    cva = results[0]["rows"][0]
    assert cva["threshold"] == 0.5
    assert cva["metrics"]["f1"] > 0.8


def test_results_are_json_ready_and_tabulated(results):
    result, _, _ = results
    text = json.dumps(result, default=str)
    assert json.loads(text)["params"]["tile"] == 32
    table = markdown_table([result])
    lines = table.splitlines()
    assert lines[0].startswith("| method | F1 |") and len(lines) == 2 + len(METHODS)
    assert "±" not in table
    f1 = result["rows"][0]["metrics"]["f1"]
    assert lines[2].startswith(f"| CVA (Otsu) | {f1:.3f} |")


def test_markdown_table_over_seeds_gives_mean_and_std():
    def run(f1: float) -> dict:
        metrics = dict.fromkeys(SCORES, 0.5) | {"f1": f1}
        return {"rows": [{"method": "m", "metrics": metrics, "best_f1": f1 + 0.1}]}

    table = markdown_table([run(0.2), run(0.4)])
    row = table.splitlines()[2]
    assert row.startswith("| m | 0.300 ± 0.141 | 0.500 ± 0.000 |")
    assert row.endswith("| 0.400 ± 0.141 |")


def test_benchmark_command(dataset, tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "benchmark",
            "--data",
            str(dataset),
            "--out",
            str(out),
            "--tile",
            "32",
            "--train-fraction",
            "0.5",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--refine-epochs",
            "0",
            "--device",
            "cpu",
            "--jsonl",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert events[-1]["event"] == "result"
    assert Path(events[-1]["outputs"]["results"]) == out
    payload = json.loads(out.read_text())
    assert payload["seeds"] == [0]
    without_refined = [m for m in METHODS if "refined" not in m]  # --refine-epochs 0
    assert [r["method"] for r in payload["runs"][0]["rows"]] == without_refined
    assert "| CVA (Otsu) |" in payload["table_markdown"]
    assert (tmp_path / "results" / "seed0" / "model.pt").is_file()
