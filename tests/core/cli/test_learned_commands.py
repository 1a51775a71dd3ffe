"""The learned methods through the real command line: train, detect, vectorize and their errors.

Runs ``python -m core`` as a subprocess on the LEVIR-CD sample of ../shared/data/levir_cd_bit
(nine 256 px pairs); skipped when the samples are absent. The backbone is a random ResNet-18
read from a weights file (``--weights``), so nothing is downloaded.
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

from core.cli.protocol import run_problems
from core.models.backbones.registry import build_backbone
from core.models.model_file import load_model

gdal.UseExceptions()

PROJECT_ROOT = Path(__file__).resolve().parents[3]
LEVIR = PROJECT_ROOT.parent / "shared" / "data" / "levir_cd_bit"
PAIR = "test_2_0000_0000.png"
# One thread per worker: on a 2-core machine shared with other jobs, two OpenMP threads per
# process spin against each other and make a few CPU steps tens of times slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def kdmsi(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m core ARGS`` from the project root and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "core", *(str(a) for a in args)],
        cwd=PROJECT_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def events_of(run: subprocess.CompletedProcess) -> list[dict]:
    """Every stdout line as JSON (a line that is not JSON fails the test), checked against the
    protocol (core/cli/protocol.json): every event, the result's keys and the exit status."""
    events = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert run_problems(events, run.args[3], run.returncode) == []
    return events


def error_message(run: subprocess.CompletedProcess) -> str:
    """The one ``error`` event of a ``--jsonl`` run."""
    errors = [e for e in events_of(run) if e["event"] == "error"]
    assert len(errors) == 1, run.stdout + run.stderr
    return errors[0]["message"]


@pytest.fixture(scope="module")
def levir(require) -> Path:
    return require(LEVIR)


@pytest.fixture(scope="module")
def pair(levir) -> tuple[Path, Path]:
    return levir / "A" / PAIR, levir / "B" / PAIR


@pytest.fixture(scope="module")
def trained(levir, tmp_path_factory):
    """``kdmsi train`` once (1 epoch, 64 px tiles, random ResNet-18)."""
    root = tmp_path_factory.mktemp("learned")
    torch.manual_seed(0)
    weights = root / "resnet18_random.pth"
    torch.save(build_backbone("resnet18", pretrained=False).state_dict(), weights)
    run_dir = root / "RUN"
    run = kdmsi(
        "train",
        "--data",
        levir,
        "--tile",
        64,
        "--epochs",
        1,
        "--batch-size",
        16,
        "--backbone",
        "resnet18",
        "--weights",
        weights,
        "--out",
        run_dir,
        "--device",
        "cpu",
        "--jsonl",
    )
    return run, run_dir, root


@pytest.fixture(scope="module")
def detected(trained, pair):
    """``kdmsi detect --method kdmsi --scales 1`` on one pair."""
    _, run_dir, root = trained
    out = root / "P.tif"
    run = kdmsi(
        "detect",
        "--method",
        "kdmsi",
        "--model",
        run_dir / "model.pt",
        "--scales",
        1,
        "-a",
        pair[0],
        "-b",
        pair[1],
        "--out",
        out,
        "--device",
        "cpu",
        "--jsonl",
    )
    return run, out


def check_probability_map(path: Path, like: Path) -> np.ndarray:
    ds, src = gdal.Open(str(path)), gdal.Open(str(like))
    assert (ds.RasterXSize, ds.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert ds.RasterCount == 1
    values = ds.ReadAsArray()
    assert values.dtype == np.float32
    assert np.isfinite(values).all()
    assert values.min() >= 0.0 and values.max() <= 1.0
    return values


def test_train_reports_the_model(trained):
    run, run_dir, _ = trained
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = events_of(run)
    assert events[-1]["event"] == "result"
    outputs = events[-1]["outputs"]
    assert Path(outputs["model"]) == run_dir / "model.pt"
    for key in ("model", "log", "plot"):
        assert Path(outputs[key]).is_file(), key
    assert (run_dir / "checkpoint.pt").is_file()
    assert events[-1]["metrics"]["selected_epoch"] == 1
    assert 0.0 <= events[-1]["metrics"]["val_auc"] <= 1.0
    kinds = {e["event"] for e in events}
    assert {"log", "metric", "result"} <= kinds
    assert any("weights loaded from" in e.get("message", "") for e in events)


def test_detect_kdmsi_writes_a_probability_map(detected, pair, trained):
    run, out = detected
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = events_of(run)[-1]
    assert result["event"] == "result"
    assert Path(result["outputs"]["probability"]) == out
    info, _ = load_model(trained[1] / "model.pt")
    assert 0.0 < info.threshold_single < 1.0
    assert result["metrics"]["threshold"] == pytest.approx(info.threshold_single)
    check_probability_map(out, pair[0])
    metadata = gdal.Open(str(out)).GetMetadata()
    assert float(metadata["kdmsi_threshold"]) == pytest.approx(info.threshold_single)
    assert metadata["kdmsi_method"] == "kdmsi" and metadata["kdmsi_network"] == "student"
    assert metadata["kdmsi_scales"] == "1"
    assert Path(metadata["kdmsi_model"]) == (trained[1] / "model.pt").resolve()


def test_detect_cam(trained, pair):
    _, run_dir, root = trained
    out = root / "cam.tif"
    run = kdmsi(
        "detect",
        "--method",
        "cam",
        "--model",
        run_dir / "model.pt",
        "-a",
        pair[0],
        "-b",
        pair[1],
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    values = check_probability_map(out, pair[0])
    assert values.max() > 0.5  # a normalised CAM reaches about 1 somewhere
    assert gdal.Open(str(out)).GetMetadata()["kdmsi_network"] == "teacher"


def test_vectorize_the_result(detected, trained):
    _, out = detected
    polygons = trained[2] / "changes.gpkg"
    run = kdmsi("vectorize", "--prob", out, "--out", polygons, "--jsonl")
    assert run.returncode == 0, run.stdout + run.stderr
    result = events_of(run)[-1]
    assert result["event"] == "result"
    assert Path(result["outputs"]["polygons"]) == polygons
    stored = float(gdal.Open(str(out)).GetMetadata()["kdmsi_threshold"])
    assert result["metrics"]["threshold"] == pytest.approx(stored)  # read from the map
    assert polygons.is_file()
    ds = gdal.OpenEx(str(polygons), gdal.OF_VECTOR)
    assert ds.GetLayerCount() >= 1
    assert ds.GetLayer(0).GetFeatureCount() == result["metrics"]["count"]


def test_kdmsi_without_model_is_a_user_error(pair, tmp_path):
    out = tmp_path / "p.tif"
    run = kdmsi("detect", "--method", "kdmsi", "-a", pair[0], "-b", pair[1], "--out", out)
    assert run.returncode == 2
    assert "--model" in run.stderr and "Traceback" not in run.stderr
    assert run.stderr.startswith("error:")
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100], ids=["empty", "garbage"])
def test_detect_with_a_corrupt_model_names_the_file(pair, tmp_path, content):
    model = tmp_path / "broken_model.pt"
    model.write_bytes(content)
    out = tmp_path / "p.tif"
    run = kdmsi("detect", "--model", model, "-a", pair[0], "-b", pair[1], "--out", out, "--jsonl")
    assert run.returncode == 2
    assert str(model) in error_message(run)
    assert not out.exists()


def test_detect_with_a_missing_model_names_the_file(pair, tmp_path):
    model = tmp_path / "nowhere.pt"
    run = kdmsi("detect", "--model", model, "-a", pair[0], "-b", pair[1], "--out", tmp_path / "p")
    assert run.returncode == 2
    assert str(model) in run.stderr and "does not exist" in run.stderr


def test_train_into_an_existing_run_needs_resume(trained, levir):
    _, run_dir, _ = trained
    before = (run_dir / "model.pt").stat().st_mtime_ns
    run = kdmsi(
        "train",
        "--data",
        levir,
        "--tile",
        64,
        "--epochs",
        1,
        "--backbone",
        "resnet18",
        "--out",
        run_dir,
        "--device",
        "cpu",
        "--jsonl",
    )
    assert run.returncode == 2
    message = error_message(run)
    assert str(run_dir) in message and "--resume" in message
    assert (run_dir / "model.pt").stat().st_mtime_ns == before


def test_train_without_tags_is_a_user_error(tmp_path):
    run = kdmsi("train", "--out", tmp_path / "run", "--jsonl")
    assert run.returncode == 2
    assert "--data" in error_message(run)
    assert not (tmp_path / "run").exists()


# --- demo ------------------------------------------------------------------------------------


def test_demo_needs_both_dates(tmp_path, pair):
    run = kdmsi("demo", "--before", pair[0], "--out", tmp_path / "demo", "--jsonl")
    assert run.returncode == 2
    assert "--after" in error_message(run)


def test_demo_needs_tags_for_a_real_pair(tmp_path, pair):
    run = kdmsi("demo", "-a", pair[0], "-b", pair[1], "--out", tmp_path / "demo", "--jsonl")
    assert run.returncode == 2
    assert "--labels" in error_message(run)


@pytest.mark.slow
def test_demo_on_the_synthetic_scene(tmp_path):
    out = tmp_path / "demo"
    run = kdmsi("demo", "--epochs", 1, "--device", "cpu", "--out", out, "--jsonl")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = events_of(run)[-1]
    assert result["event"] == "result"
    outputs = result["outputs"]
    assert outputs["note"] == "synthetic demo scene"
    for key in ("probability", "polygons", "quicklook", "tags", "model"):
        assert Path(outputs[key]).is_file(), key
    assert Path(outputs["polygons"]).with_suffix(".prj").is_file()
    before = out / "scene" / "before.tif"
    values = check_probability_map(Path(outputs["probability"]), before)
    scene = gdal.Open(str(before))
    assert values.shape == (scene.RasterYSize, scene.RasterXSize)
    srs = gdal.Open(outputs["probability"]).GetSpatialRef()
    assert srs.GetAuthorityCode(None) == "32633"
    assert Path(outputs["quicklook"]).read_bytes()[:4] == b"\x89PNG"
