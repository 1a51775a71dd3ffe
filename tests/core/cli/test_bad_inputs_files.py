"""Bad files and output places through the command line: missing, empty, truncated, corrupt or
non-raster inputs, unreadable paths, unwritable or full output folders, existing outputs.

Every case must end in exit 2 with one ``error`` event naming the file, and leave no output
(nor a temporary ``.partial`` file) behind. The commands run in-process (``core.cli.main.main``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from osgeo import gdal

from core.cli.main import main
from core.errors import KdmsiError
from core.io.outputs import check_free_space

gdal.UseExceptions()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_SKIP = "runs as root, who may read and write files whatever their permissions"


def cli(capsys, *args) -> tuple[int, list[dict]]:
    """Run ``kdmsi ARGS --jsonl``; return the exit status and the JSON events."""
    status = main([str(a) for a in args] + ["--jsonl"])
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def error_of(events: list[dict]) -> str:
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert len(errors) == 1, events
    return errors[0]


def leftovers(folder: Path) -> list[Path]:
    """Temporary outputs left in a folder."""
    return [p for p in folder.iterdir() if "partial" in p.name or p.name.startswith(".kdmsi")]


@pytest.fixture
def pair(tmp_path, write_raster, scene):
    a = write_raster(tmp_path / "a.tif", scene(96, 80, 3, seed=1))
    b = write_raster(tmp_path / "b.tif", scene(96, 80, 3, seed=2))
    return a, b


def bad_file(kind: str, folder: Path, good: Path) -> Path:
    """A broken copy of ``good`` (or another wrong thing) named like a GeoTIFF."""
    path = folder / f"{kind}.tif"
    data = good.read_bytes()
    if kind == "missing":
        return path
    if kind == "empty":
        path.touch()
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "header":  # the TIFF magic number destroyed
        path.write_bytes(b"\0" * 8 + data[8:])
    elif kind == "text":
        path.write_text("not a raster\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "geopackage":
        shutil.copy(good.with_name("tags_for_bad.gpkg"), path)
    return path


KINDS = ["missing", "empty", "truncated", "header", "text", "folder", "geopackage"]


def commands(bad: Path, good: Path, out: Path) -> dict[str, list]:
    return {
        "grid": ["grid", "-a", bad, "-b", good, "--tile", 32, "--out", out.with_suffix(".gpkg")],
        "grid-after": ["grid", "-a", good, "-b", bad, "--out", out.with_suffix(".gpkg")],
        "cva": ["detect", "--method", "cva", "-a", good, "-b", bad, "--out", out],
        "vectorize": ["vectorize", "--prob", bad, "--out", out.with_suffix(".gpkg")],
        "evaluate-pred": ["evaluate", "--pred", bad, "--label", good],
        "evaluate-label": ["evaluate", "--pred", good, "--label", bad],
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "command", ["grid", "grid-after", "cva", "vectorize", "evaluate-pred", "evaluate-label"]
)
def test_broken_input_file_is_one_error_naming_it(tmp_path, pair, capsys, kind, command):
    a, _ = pair
    if kind == "geopackage":
        tags = a.with_name("tags_for_bad.gpkg")
        assert cli(capsys, "grid", "-a", a, "-b", a, "--out", tags)[0] == 0
    bad = bad_file(kind, tmp_path, a)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    status, events = cli(capsys, *commands(bad, a, out_dir / "o.tif")[command])
    assert status == 2, events
    assert str(bad) in error_of(events)
    assert list(out_dir.iterdir()) == []


@pytest.mark.skipif(IS_ROOT, reason=ROOT_SKIP)
def test_unreadable_input(tmp_path, pair, capsys):
    a, b = pair
    a.chmod(0)
    try:
        status, events = cli(capsys, "grid", "-a", a, "-b", b, "--out", tmp_path / "t.gpkg")
    finally:
        a.chmod(0o644)
    assert status == 2 and "not readable" in error_of(events) and str(a) in error_of(events)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("read-only", marks=pytest.mark.skipif(IS_ROOT, reason=ROOT_SKIP)),
        pytest.param(
            "sysfs",
            marks=pytest.mark.skipif(not Path("/sys").is_dir(), reason="no /sys on this system"),
        ),
    ],
)
@pytest.mark.parametrize("command", ["grid", "cva", "vectorize", "train"])
def test_output_folder_not_writable(tmp_path, pair, capsys, where, command):
    """A chmod 555 folder, and sysfs, where not even root may create files."""
    a, b = pair
    folder = Path("/sys")
    if where == "read-only":
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
    argv = {
        "grid": ["grid", "-a", a, "-b", b, "--out", folder / "kdmsi_t.gpkg"],
        "cva": ["detect", "--method", "cva", "-a", a, "-b", b, "--out", folder / "kdmsi_c.tif"],
        "vectorize": ["vectorize", "--prob", a, "--out", folder / "kdmsi_v.gpkg"],
        "train": ["train", "-a", a, "-b", b, "--tags", "t.gpkg", "--out", folder / "kdmsi_run"],
    }[command]
    status, events = cli(capsys, *argv)
    assert status == 2, events
    assert str(folder) in error_of(events)
    assert not list(folder.glob("*kdmsi*"))


def test_too_little_free_space_is_refused_before_the_work(tmp_path, pair, capsys):
    """A VRT of 400 000 x 400 000 pixels would need 640 GB of float32 output."""
    a, _ = pair
    huge = tmp_path / "huge.vrt"
    gdal.Translate(str(huge), str(a), format="VRT", width=400_000, height=400_000)
    free = shutil.disk_usage(tmp_path).free
    if free > 400_000**2 * 4:
        pytest.skip(f"the disk has {free} bytes free, more than the 640 GB output")
    out = tmp_path / "c.tif"
    status, events = cli(capsys, "detect", "--method", "cva", "-a", huge, "-b", huge, "--out", out)
    message = error_of(events)
    assert status == 2 and "free" in message and str(out) in message
    assert not out.exists() and not leftovers(tmp_path)


def test_check_free_space_compares_with_the_real_disk(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    check_free_space(tmp_path, 1024, "a small output")
    with pytest.raises(KdmsiError, match="free some space"):
        check_free_space(tmp_path, free + 2**30, "a large output")


def test_run_folder_that_is_a_file(tmp_path, pair, capsys):
    a, b = pair
    run = tmp_path / "run"
    run.write_text("not a folder")
    status, events = cli(capsys, "train", "-a", a, "-b", b, "--tags", "t.gpkg", "--out", run)
    assert status == 2 and str(run) in error_of(events)
    assert run.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["grid", "cva", "vectorize"])
def test_existing_output_is_kept_without_overwrite(tmp_path, pair, capsys, command):
    a, b = pair
    out = tmp_path / ("o.gpkg" if command != "cva" else "o.tif")
    out.write_bytes(b"earlier result")
    argv = {
        "grid": ["grid", "-a", a, "-b", b, "--out", out],
        "cva": ["detect", "--method", "cva", "-a", a, "-b", b, "--out", out],
        "vectorize": ["vectorize", "--prob", a, "--out", out],
    }[command]
    status, events = cli(capsys, *argv)
    assert status == 2 and str(out) in error_of(events) and "overwrite" in error_of(events)
    assert out.read_bytes() == b"earlier result"
    status, events = cli(capsys, *argv, "--overwrite")
    assert status == 0, events
    assert out.read_bytes() != b"earlier result"


def test_failure_while_writing_keeps_the_earlier_output(tmp_path, pair, capsys):
    """B breaks half way through the map: the earlier map stays and no partial file is left."""
    a, b = pair
    out = tmp_path / "c.tif"
    assert cli(capsys, "detect", "--method", "cva", "-a", a, "-b", b, "--out", out)[0] == 0
    earlier = out.read_bytes()
    broken = tmp_path / "broken.tif"
    gdal.Translate(
        str(broken), str(b), creationOptions=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]
    )
    data = broken.read_bytes()
    broken.write_bytes(data[: int(len(data) * 0.7)])
    argv = ["detect", "--method", "cva", "-a", a, "-b", broken, "--out", out, "--overwrite"]
    status, events = cli(capsys, *argv)
    assert status == 2 and str(broken) in error_of(events)
    assert out.read_bytes() == earlier
    assert not leftovers(tmp_path)
