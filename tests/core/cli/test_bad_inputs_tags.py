"""Bad tag layers through ``kdmsi train``: none, one class, too few to hold out, another CRS,
another pair, and a GeoPackage locked by another process.

A 96x80 synthetic pair cut in 32 px tiles (9 tiles); training runs use a random ResNet-18 read
from a weights file (nothing downloaded), one epoch, on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from osgeo import gdal, ogr

from core.callbacks import Callbacks
from core.cli.main import main
from core.data.tags import read_tags
from core.data.trainsets import tiles_from_tag_layer
from core.errors import KdmsiError
from core.models.backbones.registry import build_backbone

gdal.UseExceptions()
ogr.UseExceptions()


def cli(capsys, *args) -> tuple[int, list[dict]]:
    """Run ``kdmsi ARGS --jsonl``; return the exit status and the JSON events."""
    status = main([str(a) for a in args] + ["--jsonl"])
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def error_of(events: list[dict]) -> str:
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert len(errors) == 1, events
    return errors[0]


def set_labels(path, labels: dict[int, int | None]) -> None:
    """Tag tiles (tile id -> 1, 0 or None) in a tag GeoPackage, as the plugin's map tool does."""
    ds = ogr.Open(str(path), 1)
    layer = ds.GetLayerByName("tiles")
    for feature in layer:
        value = labels.get(feature.GetField("tile_id"))
        if value is None:
            feature.SetFieldNull("label")
        else:
            feature.SetField("label", value)
        layer.SetFeature(feature)
    ds = None


@pytest.fixture
def pair(tmp_path, write_raster, scene):
    a = write_raster(tmp_path / "a.tif", scene(96, 80, 3, seed=1))
    after = scene(96, 80, 3, seed=1)
    after[:, 5:25, 5:25] = 250  # a change in tile 0
    b = write_raster(tmp_path / "b.tif", after)
    return a, b


@pytest.fixture
def tags(tmp_path, pair, capsys):
    a, b = pair
    path = tmp_path / "tags.gpkg"
    assert cli(capsys, "grid", "-a", a, "-b", b, "--tile", 32, "--out", path)[0] == 0
    return path


def train_args(pair, tags, out, *extra) -> list:
    return ["train", "-a", pair[0], "-b", pair[1], "--tags", tags, "--out", out, *extra]


def test_no_tags(tmp_path, pair, tags, capsys):
    status, events = cli(capsys, *train_args(pair, tags, tmp_path / "run"))
    assert status == 2 and "has no tagged tile" in error_of(events)
    assert str(tags) in error_of(events)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only(tmp_path, pair, tags, capsys, label):
    set_labels(tags, {i: label for i in range(9)})
    status, events = cli(capsys, *train_args(pair, tags, tmp_path / "run"))
    message = error_of(events)
    assert status == 2 and "tag at least one tile of each class" in message
    assert str(tags) in message


@pytest.fixture
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18_random.pth"
    torch.manual_seed(0)
    torch.save(build_backbone("resnet18", pretrained=False).state_dict(), path)
    return path


def test_too_few_tags_for_validation_in_another_crs_still_train(
    tmp_path, pair, tags, capsys, weights
):
    """Two tags (one per class) leave nothing to hold out; the layer was saved in EPSG:4326."""
    set_labels(tags, {0: 1, 4: 0})
    wgs84 = tmp_path / "tags_4326.gpkg"
    gdal.VectorTranslate(str(wgs84), str(tags), dstSRS="EPSG:4326", reproject=True)
    extra = ["--epochs", 1, "--backbone", "resnet18", "--weights", weights, "--device", "cpu"]
    status, events = cli(capsys, *train_args(pair, wgs84, tmp_path / "run", *extra))
    assert status == 0, events
    logs = "\n".join(e["message"] for e in events if e["event"] == "log")
    assert "Too few tags" in logs  # the last epoch is kept instead of choosing one
    assert "is in WGS 84" in logs and "matched by their pixel windows" in logs
    assert (tmp_path / "run" / "model.pt").is_file()


def test_tag_layer_of_another_place(tmp_path, pair, tags, capsys, write_raster, scene):
    """Same size, georeferenced 2 km away: the tile polygons do not lie on this pair."""
    set_labels(tags, {0: 1, 4: 0})
    shifted = (502_000.0, 10.0, 0.0, 4_600_000.0, 0.0, -10.0)
    a2 = write_raster(tmp_path / "a2.tif", scene(96, 80, 3, seed=4), geotransform=shifted)
    b2 = write_raster(tmp_path / "b2.tif", scene(96, 80, 3, seed=5), geotransform=shifted)
    status, events = cli(capsys, *train_args((a2, b2), tags, tmp_path / "run"))
    message = error_of(events)
    assert status == 2 and "made for another pair" in message and str(tags) in message


def test_tag_layer_of_another_size(tmp_path, tags, capsys, write_raster, scene):
    a2 = write_raster(tmp_path / "a2.tif", scene(64, 64, 3))
    status, events = cli(capsys, *train_args((a2, a2), tags, tmp_path / "run"))
    assert status == 2 and "was made for a 96x80 raster" in error_of(events)


def test_ungeoreferenced_tag_layer_of_other_files_warns(tmp_path, write_raster, scene, capsys):
    """Without georeferencing another pair of the same size cannot be told apart: a warning."""
    files = [
        write_raster(tmp_path / f"{n}.tif", scene(64, 64, 3, seed=s), geotransform=None, crs=None)
        for n, s in (("a", 1), ("b", 2), ("c", 3), ("d", 4))
    ]
    tags = tmp_path / "tags.gpkg"
    assert cli(capsys, "grid", "-a", files[0], "-b", files[1], "--tile", 32, "--out", tags)[0] == 0
    set_labels(tags, {0: 1, 1: 0})
    logs = []
    tiles = tiles_from_tag_layer(
        files[2], files[3], tags, None, Callbacks(log=lambda lvl, m: logs.append((lvl, m)))
    )
    assert len(tiles) == 2
    assert any(lvl == "warning" and "was made for" in m for lvl, m in logs)


def test_tag_layer_with_impossible_values(tmp_path, tags):
    set_labels(tags, {0: 7})
    with pytest.raises(KdmsiError, match="has label 7"):
        read_tags(tags)


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_geopackage_locked_by_another_process(tmp_path, pair, tags, capsys):
    set_labels(tags, {0: 1, 4: 0})
    before = read_tags(tags)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(tags)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        status, events = cli(capsys, *train_args(pair, tags, tmp_path / "run"))
    finally:
        locker.stdin.close()
        locker.wait(timeout=30)
    message = error_of(events)
    assert status == 2 and "locked by another program" in message and str(tags) in message
    assert not (tmp_path / "run" / "model.pt").exists()
    after = read_tags(tags)  # the tags are intact once the lock is gone
    assert [t.label for t in after.tiles] == [t.label for t in before.tiles]
    assert np.count_nonzero([t.label is not None for t in after.tiles]) == 2
