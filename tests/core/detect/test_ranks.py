"""Detection under torchrun: two gloo ranks write the same map as one process.

The pair is 200 x 150 px and the windows 64 px, so the raster has several rows of windows and each
rank computes a band of them (the rows of windows at the boundary by both, as ``--workers`` does);
the map is MSI with flips, float32, on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from core.detect.parallel import row_bands
from core.detect.params import DetectParams
from core.detect.ranks import blocks_folder
from core.models.model_file import ModelInfo, save_model
from core.models.teacher_student import CamConfig, TeacherStudent

gdal.UseExceptions()
PROJECT_ROOT = Path(__file__).resolve().parents[3]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
DETECT_ARGS = ["--device", "cpu", "--precision", "fp32", "--window", "64", "--method", "kdmsi"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, write_raster, scene) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("ranks")
    before = write_raster(folder / "a.tif", scene(200, 150, bands=3, seed=1))
    after = write_raster(folder / "b.tif", scene(200, 150, bands=3, seed=2))
    torch.manual_seed(0)
    pair = TeacherStudent(CamConfig(backbone="resnet18", pretrained=False))
    model = folder / "model.pt"
    info = ModelInfo("resnet18", "minus", "cat", 16, [1, 2, 3], 32, threshold=0.4)
    save_model(model, info, {"student": pair.student.state_dict()})
    return before, after, model


def detect(prefix: list[str], inputs, out: Path) -> subprocess.CompletedProcess:
    before, after, model = inputs
    command = [*prefix, "-m", "core", "detect", "--before", str(before), "--after", str(after)]
    command += ["--model", str(model), "--out", str(out), *DETECT_ARGS, "--jsonl"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    folder = tmp_path_factory.mktemp("maps")
    found = {}
    for name, prefix in (("one", [sys.executable]), ("two", TORCHRUN)):
        out = folder / f"{name}.tif"
        found[name] = (out, detect(prefix, inputs, out))
        done = found[name][1]
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return found


def read(path: Path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def test_two_ranks_write_the_map_of_one_process(runs):
    one, two = read(runs["one"][0]), read(runs["two"][0])
    assert one.shape == two.shape == (150, 200)
    assert np.isfinite(one).all() and 0.0 <= one.min() and one.max() <= 1.0
    assert one.std() > 1e-3  # a map with structure, not a constant both would share trivially
    np.testing.assert_allclose(two, one, atol=1e-5, rtol=0)
    meta_one = gdal.Open(str(runs["one"][0])).GetMetadata()
    meta_two = gdal.Open(str(runs["two"][0])).GetMetadata()
    assert meta_two["kdmsi_threshold"] == meta_one["kdmsi_threshold"] == "0.4"
    assert not blocks_folder(runs["two"][0]).exists()  # the ranks' blocks are removed


def test_only_rank_zero_reports(runs):
    events = [json.loads(line) for line in runs["two"][1].stdout.splitlines()]
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1 and results[0]["metrics"]["threshold"] == pytest.approx(0.4)
    ranks = [e["message"] for e in events if e.get("message", "").startswith("Rank ")]
    first = row_bands(150, DetectParams(window=64).tiling(32), 2)[0]
    assert 0 < first.stop < 150  # two bands: rank 1 had rows too
    assert ranks == [f"Rank 0 of 2 on cpu: rows 0 to {first.stop - 1} of 150."]


def test_an_existing_output_stops_every_rank_and_is_kept(runs, inputs):
    out = runs["one"][0]
    before = out.read_bytes()
    done = detect(TORCHRUN, inputs, out)
    assert done.returncode != 0
    errors = [json.loads(x) for x in done.stdout.splitlines() if '"error"' in x]
    assert any("already exists" in e["message"] for e in errors)
    assert out.read_bytes() == before
