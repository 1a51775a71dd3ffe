"""Tests of the ``kdmsi`` command line, run as a real subprocess (``python -m core``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from osgeo import gdal, osr

from core.cli.main import COMMANDS
from core.data.tags import read_tags
from core.data.tiles import TileSpec

gdal.UseExceptions()

PROJECT_ROOT = Path(__file__).resolve().parents[3]
METRIC_KEYS = {"precision", "recall", "f1", "iou", "oa", "kappa"}


def kdmsi(*args: object) -> subprocess.CompletedProcess:
    """Run ``python -m core ARGS`` from the project root and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "core", *(str(a) for a in args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def json_lines(stdout: str) -> list[dict]:
    """Every stdout line parsed as JSON (fails the test on a line that is not)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def same_srs(wkt_a: str, wkt_b: str) -> bool:
    return bool(osr.SpatialReference(wkt=wkt_a).IsSame(osr.SpatialReference(wkt=wkt_b)))


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_exits_0(command):
    args = ["--help"] if command is None else [command, "--help"]
    run = kdmsi(*args)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: kdmsi")
    assert "--help" in run.stdout
    if command is not None:
        assert "--jsonl" in run.stdout and "--debug" in run.stdout


@pytest.mark.parametrize("command", [["train"], ["benchmark", "--data", "d"]])
def test_epochs_default_is_the_training_default(command):
    from core.cli.main import build_parser
    from core.train.trainer import TrainParams

    args = build_parser().parse_args([*command, "--out", "x"])
    assert args.epochs == TrainParams().epochs == 60


@pytest.mark.parametrize("command", [["train"], ["benchmark", "--data", "d"]])
def test_affinity_rounds_default_off_and_reach_the_training(command):
    from core.cli.main import build_parser
    from core.train.trainer import TrainParams

    parser = build_parser()
    assert parser.parse_args([*command, "--out", "x"]).affinity_rounds == 0
    assert TrainParams().affinity_rounds == 0
    args = parser.parse_args([*command, "--out", "x", "--affinity-rounds", "10"])
    assert args.affinity_rounds == 10


@pytest.mark.parametrize("value", ["-1", "51", "two"])
def test_affinity_rounds_outside_0_to_50_are_refused(value, tmp_path):
    run = kdmsi("train", "--data", tmp_path, "--out", tmp_path / "run", "--affinity-rounds", value)
    assert run.returncode == 2
    assert "--affinity-rounds" in run.stderr and "from 0 to 50" in run.stderr


@pytest.mark.parametrize("command", [["train"], ["benchmark", "--data", "d"]])
def test_min_steps_default_is_declared_once_and_reaches_the_training(command):
    from core.choices import DEFAULTS
    from core.cli.main import build_parser
    from core.train.trainer import TrainParams

    parser = build_parser()
    assert parser.parse_args([*command, "--out", "x"]).min_steps == DEFAULTS.min_steps
    assert TrainParams().min_steps == DEFAULTS.min_steps
    assert parser.parse_args([*command, "--out", "x", "--min-steps", "800"]).min_steps == 800


def test_min_steps_reach_the_training_parameters():
    from core.cli.benchmark import base_params
    from core.cli.main import build_parser
    from core.cli.train import train_params

    parser = build_parser()
    args = parser.parse_args(["train", "--out", "x", "--min-steps", "800", "--epochs", "20"])
    assert (train_params(args).min_steps, train_params(args).epochs) == (800, 20)
    args = parser.parse_args(["benchmark", "--data", "d", "--out", "x", "--min-steps", "800"])
    assert base_params(args, seed=1).train.min_steps == 800


@pytest.mark.parametrize("value", ["-1", "many"])
def test_min_steps_below_0_or_not_a_number_are_refused(value, tmp_path):
    run = kdmsi("train", "--data", tmp_path, "--out", tmp_path / "run", "--min-steps", value)
    assert run.returncode == 2
    assert "--min-steps" in run.stderr and "whole number of 0 or more" in run.stderr


def test_version():
    run = kdmsi("--version")
    assert run.returncode == 0
    assert run.stdout.startswith("kdmsi ")


# --- the real chain grid -> detect -> evaluate -> vectorize on OSCD Mumbai --------------------


@pytest.fixture(scope="module")
def chain(mumbai, tmp_path_factory):
    """Run grid, detect and evaluate once; tests below check their outputs."""
    before, after, label = mumbai
    out = tmp_path_factory.mktemp("chain")
    pair = ["--before", before, "--after", after, "--bands", "3,2,1"]
    runs = {
        "grid": kdmsi("grid", *pair, "--tile", 128, "--labels", label, "--out", out / "tags.gpkg"),
        "detect": kdmsi("detect", *pair, "--method", "cva", "--out", out / "prob.tif", "--jsonl"),
    }
    runs["evaluate"] = kdmsi("evaluate", "--pred", out / "prob.tif", "--label", label, "--jsonl")
    return {"before": before, "after": after, "label": label, "out": out, "runs": runs}


def test_grid_reports_tile_counts_and_writes_a_tag_layer(chain):
    run = chain["runs"]["grid"]
    assert run.returncode == 0, run.stderr
    match = re.search(
        r"(\d+) tiles of 128 px \((\d+) changed, (\d+) unchanged, (\d+) untagged\)", run.stdout
    )
    assert match, run.stdout
    total, changed, unchanged, untagged = map(int, match.groups())
    layer = read_tags(chain["out"] / "tags.gpkg")
    assert layer.counts == {"changed": changed, "unchanged": unchanged, "untagged": untagged}
    assert len(layer.tiles) == total == changed + unchanged
    assert untagged == 0
    # the counts agree with the label itself: a tile is changed if any of its pixels is
    label = gdal.Open(str(chain["label"])).ReadAsArray() > 0
    spec = TileSpec(label.shape[1], label.shape[0], 128)
    expected = [int(label[t.window.slices].any()) for t in spec.tiles()]
    assert expected.count(1) == changed and expected.count(0) == unchanged
    assert [t.label for t in layer.tiles] == expected
    assert layer.meta["tile"] == "128"
    assert Path(layer.meta["before"]) == Path(chain["before"]).resolve()


def test_detect_writes_a_map_on_a_grid(chain):
    run = chain["runs"]["detect"]
    assert run.returncode == 0, run.stderr
    events = json_lines(run.stdout)
    assert all("event" in e for e in events)
    result = events[-1]
    assert result["event"] == "result"
    assert Path(result["outputs"]["probability"]) == chain["out"] / "prob.tif"
    assert Path(result["outputs"]["mask"]) == chain["out"] / "prob_mask.tif"
    a = gdal.Open(str(chain["before"]))
    for name in ("prob.tif", "prob_mask.tif"):
        ds = gdal.Open(str(chain["out"] / name))
        assert (ds.RasterXSize, ds.RasterYSize) == (a.RasterXSize, a.RasterYSize)
        assert ds.GetGeoTransform() == a.GetGeoTransform()
        assert same_srs(ds.GetProjection(), a.GetProjection())
    assert any(e["event"] == "progress" for e in events)


def test_evaluate_reports_the_metrics_as_json(chain):
    run = chain["runs"]["evaluate"]
    assert run.returncode == 0, run.stderr
    events = json_lines(run.stdout)
    tail = events[-2:]
    scores = [e for e in tail if METRIC_KEYS <= e.keys()] + [
        e["metrics"] for e in tail if e.get("event") == "result"
    ]
    assert scores, run.stdout
    for metrics in scores:
        assert METRIC_KEYS <= metrics.keys()
        assert metrics["f1"] > 0.1
        assert 0.0 <= metrics["precision"] <= 1.0 and 0.0 <= metrics["oa"] <= 1.0


def test_evaluate_prints_a_readable_summary(chain):
    run = kdmsi("evaluate", "--pred", chain["out"] / "prob_mask.tif", "--label", chain["label"])
    assert run.returncode == 0, run.stderr
    assert "changed class: precision" in run.stdout
    f1 = float(re.search(r"F1 ([0-9.]+)", run.stdout).group(1))
    assert f1 > 0.1  # the 0/1 mask scores like the probability map at 0.5


def test_vectorize_polygons_lie_on_the_labelled_change(chain):
    try:
        import core.vector.vectorize  # noqa: F401
    except Exception as exc:
        pytest.skip(f"core.vector.vectorize is not importable ({exc!r})")
    fiona = pytest.importorskip("fiona")
    out = chain["out"] / "change.shp"
    run = kdmsi("vectorize", "--prob", chain["out"] / "prob.tif", "--out", out)
    assert run.returncode == 0, run.stderr
    assert out.with_suffix(".prj").exists()
    with fiona.open(out) as layer:
        assert len(layer) > 0
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(4326)
        assert same_srs(layer.crs_wkt, srs.ExportToWkt())
    # burn the polygons onto the label's grid and compare with the labelled change
    label_ds = gdal.Open(str(chain["label"]))
    burned = gdal.GetDriverByName("MEM").Create(
        "", label_ds.RasterXSize, label_ds.RasterYSize, 1, gdal.GDT_Byte
    )
    burned.SetGeoTransform(label_ds.GetGeoTransform())
    burned.SetProjection(label_ds.GetProjection())
    gdal.Rasterize(burned, str(out), burnValues=[1])
    inside = burned.ReadAsArray() > 0
    changed = label_ds.ReadAsArray() > 0
    assert inside.any()
    assert changed[inside].mean() > 2 * changed.mean()


# --- errors ------------------------------------------------------------------------------------


def test_missing_before_file_is_one_error_line(tmp_path, mumbai):
    _, after, _ = mumbai
    missing = tmp_path / "missing_before.tif"
    run = kdmsi(
        "detect",
        "--method",
        "cva",
        "--before",
        missing,
        "--after",
        after,
        "--out",
        tmp_path / "p.tif",
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error:")
    assert str(missing) in lines[0]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "p.tif").exists()


def test_missing_before_file_under_jsonl_is_an_error_event(tmp_path, write_raster, scene):
    after = write_raster(tmp_path / "b.tif", scene(16, 16, 3))
    missing = tmp_path / "missing_before.tif"
    run = kdmsi("grid", "-a", missing, "-b", after, "--out", tmp_path / "t.gpkg", "--jsonl")
    assert run.returncode == 2
    event = json_lines(run.stdout)[-1]
    assert event["event"] == "error"
    assert str(missing) in event["message"]
    assert "Traceback" not in run.stderr


def test_usage_errors_exit_2_with_an_error_event(tmp_path):
    run = kdmsi("detect", "--method", "cva", "--out", tmp_path / "p.tif", "--jsonl")
    assert run.returncode == 2
    event = json_lines(run.stdout)[-1]
    assert event["event"] == "error"
    assert "--before" in event["message"]
    run = kdmsi("no-such-command")
    assert run.returncode == 2
    assert run.stderr.startswith("error:")


def test_bad_bands_are_a_user_error(tmp_path, write_raster, scene):
    path = write_raster(tmp_path / "a.tif", scene(16, 16, 3))
    run = kdmsi("grid", "-a", path, "-b", path, "--bands", "0,1", "--out", tmp_path / "t.gpkg")
    assert run.returncode == 2
    assert run.stderr.startswith("error:") and "--bands" in run.stderr
    run = kdmsi("grid", "-a", path, "-b", path, "--bands", "4", "--out", tmp_path / "t.gpkg")
    assert run.returncode == 2
    assert str(path) in run.stderr and "3 band(s)" in run.stderr


def test_existing_output_needs_overwrite(tmp_path, write_raster, scene):
    path = write_raster(tmp_path / "a.tif", scene(40, 40, 3))
    out = tmp_path / "tags.gpkg"
    args = ["grid", "-a", path, "-b", path, "--tile", 16, "--out", out]
    assert kdmsi(*args).returncode == 0
    before = out.read_bytes()
    run = kdmsi(*args)
    assert run.returncode == 2
    assert (
        run.stderr.startswith("error:") and str(out) in run.stderr and "--overwrite" in run.stderr
    )
    assert out.read_bytes() == before
    assert kdmsi(*args, "--overwrite").returncode == 0
    prob = tmp_path / "p.tif"
    prob.write_bytes(b"old")
    run = kdmsi("detect", "--method", "cva", "-a", path, "-b", path, "--out", prob)
    assert run.returncode == 2 and str(prob) in run.stderr
    assert prob.read_bytes() == b"old"


def test_debug_shows_the_traceback(tmp_path, write_raster, scene):
    after = write_raster(tmp_path / "b.tif", scene(16, 16, 3))
    missing = tmp_path / "missing_before.tif"
    run = kdmsi("grid", "-a", missing, "-b", after, "--out", tmp_path / "t.gpkg", "--debug")
    assert run.returncode != 0
    assert "Traceback (most recent call last)" in run.stderr
    assert "KdmsiError" in run.stderr and str(missing) in run.stderr


def test_quick_commands_do_not_import_torch(tmp_path, write_raster, scene):
    path = write_raster(tmp_path / "a.tif", scene(40, 40, 3))
    code = (
        "import sys\n"
        "from core.cli.main import main\n"
        f"rc = main(['grid', '-a', {str(path)!r}, '-b', {str(path)!r}, '--tile', '16',"
        f" '--out', {str(tmp_path / 't.gpkg')!r}])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.stdout.strip().splitlines()[-1] == "0 False", run.stdout + run.stderr
