"""Bad raster pairs through the command line: every case ends in exit 0 with the right log or in
exit 2 with one ``error`` event naming the file (see docs/errors.md).

Small synthetic GeoTIFFs in tmp_path; the commands run in-process (``core.cli.main.main``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal

from core.cli.main import main
from core.data.tags import read_tags
from core.io.rasters import RasterPair

gdal.UseExceptions()


def cli(capsys, *args) -> tuple[int, list[dict]]:
    """Run ``kdmsi ARGS --jsonl``; return the exit status and the JSON events."""
    status = main([str(a) for a in args] + ["--jsonl"])
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def error_of(events: list[dict]) -> str:
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert len(errors) == 1, events
    return errors[0]


def logs_of(events: list[dict]) -> str:
    return "\n".join(e["message"] for e in events if e["event"] == "log")


@pytest.fixture
def pair(tmp_path, write_raster, scene):
    """A 3-band 96x80 UTM pair on one grid."""
    a = write_raster(tmp_path / "a.tif", scene(96, 80, 3, seed=1))
    b = write_raster(tmp_path / "b.tif", scene(96, 80, 3, seed=2))
    return a, b


# --- pairs that are aligned (exit 0, logged) -------------------------------------------------


def test_different_crs_is_warped_and_logged(tmp_path, pair, capsys):
    a, b = pair
    b_wgs84 = tmp_path / "b_4326.tif"
    gdal.Warp(str(b_wgs84), str(b), dstSRS="EPSG:4326")
    status, events = cli(
        capsys, "grid", "-a", a, "-b", b_wgs84, "--tile", 32, "--out", tmp_path / "t.gpkg"
    )
    assert status == 0, events
    assert "b_4326.tif is on a different grid or CRS" in logs_of(events)
    assert len(read_tags(tmp_path / "t.gpkg").tiles) == 9


def test_different_resolution_is_warped_and_logged(tmp_path, pair, capsys):
    a, b = pair
    coarse = tmp_path / "b_20m.tif"
    gdal.Warp(str(coarse), str(b), xRes=20, yRes=20)
    out = tmp_path / "cva.tif"
    status, events = cli(capsys, "detect", "--method", "cva", "-a", a, "-b", coarse, "--out", out)
    assert status == 0, events
    assert "warping it onto the before raster's grid" in logs_of(events)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (96, 80)


def test_no_overlap_names_both_files(tmp_path, write_raster, scene, capsys):
    a = write_raster(tmp_path / "a.tif", scene(40, 40, 3))
    far = (900_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -10.0)
    b = write_raster(tmp_path / "b.tif", scene(40, 40, 3), geotransform=far)
    status, events = cli(capsys, "grid", "-a", a, "-b", b, "--out", tmp_path / "t.gpkg")
    message = error_of(events)
    assert status == 2 and "do not overlap" in message
    assert str(a) in message and str(b) in message
    assert not (tmp_path / "t.gpkg").exists()


def test_ungeoreferenced_images_of_different_sizes(tmp_path, write_raster, scene, capsys):
    a = write_raster(tmp_path / "a.tif", scene(40, 40, 3), geotransform=None, crs=None)
    b = write_raster(tmp_path / "b.tif", scene(48, 40, 3), geotransform=None, crs=None)
    out = tmp_path / "c.tif"
    status, events = cli(capsys, "detect", "--method", "cva", "-a", a, "-b", b, "--out", out)
    assert status == 2 and "without georeferencing" in error_of(events)
    assert not out.exists()


def test_different_band_counts_use_the_common_bands(tmp_path, write_raster, scene, capsys):
    a = write_raster(tmp_path / "a.tif", scene(64, 64, 4))
    b = write_raster(tmp_path / "b.tif", scene(64, 64, 3, seed=5))
    status, _ = cli(capsys, "grid", "-a", a, "-b", b, "--tile", 32, "--out", tmp_path / "t.gpkg")
    assert status == 0
    status, events = cli(
        capsys, "grid", "-a", a, "-b", b, "--bands", "4,3,2", "--out", tmp_path / "u.gpkg"
    )
    message = error_of(events)
    assert status == 2 and str(b) in message and "band 4" in message


@pytest.mark.parametrize("bands", ["9", "1,2,7"])
def test_a_band_that_does_not_exist(pair, tmp_path, capsys, bands):
    a, b = pair
    out = tmp_path / "c.tif"
    args = ("detect", "--method", "cva", "-a", a, "-b", b, "--bands", bands, "--out", out)
    status, events = cli(capsys, *args)
    assert status == 2 and "has 3 band(s)" in error_of(events) and str(a) in error_of(events)
    assert not out.exists()


@pytest.mark.parametrize("bands", ["0", "x", "1,,-2"])
def test_a_band_list_that_is_not_numbers(pair, tmp_path, capsys, bands):
    a, b = pair
    out = tmp_path / "t.gpkg"
    status, events = cli(capsys, "grid", "-a", a, "-b", b, "--bands", bands, "--out", out)
    assert status == 2 and "--bands" in error_of(events)


# --- nodata ---------------------------------------------------------------------------------


def test_all_nodata_pair_is_refused_by_grid_and_detect(tmp_path, write_raster, scene, capsys):
    a = write_raster(tmp_path / "a.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    b = write_raster(tmp_path / "b.tif", scene(64, 64, 3))
    status, events = cli(capsys, "grid", "-a", a, "-b", b, "--out", tmp_path / "t.gpkg")
    assert status == 2 and "no pixel with data on both dates" in error_of(events)
    out = tmp_path / "c.tif"
    status, events = cli(capsys, "detect", "--method", "cva", "-a", a, "-b", b, "--out", out)
    assert status == 2 and "no pixel with data on both dates" in error_of(events)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_partly_nodata_is_left_out_of_tiles_maps_and_polygons(
    tmp_path, write_raster, scene, capsys
):
    before = scene(96, 64, 3, seed=1)
    after = scene(96, 64, 3, seed=9)  # a different scene: change everywhere
    before[:, :, :32] = 0  # the left 32 columns hold no data in A
    a = write_raster(tmp_path / "a.tif", before, nodata=0)
    b = write_raster(tmp_path / "b.tif", after)
    tags = tmp_path / "t.gpkg"
    assert cli(capsys, "grid", "-a", a, "-b", b, "--tile", 32, "--out", tags)[0] == 0
    cols = sorted({t.tile.col for t in read_tags(tags).tiles})
    assert cols == [1, 2]  # the all-nodata column of tiles is left out
    prob = tmp_path / "p.tif"
    assert cli(capsys, "detect", "--method", "cva", "-a", a, "-b", b, "--out", prob)[0] == 0
    prob_ds = gdal.Open(str(prob))
    mask = prob_ds.GetRasterBand(1).GetMaskBand().ReadAsArray()
    assert (mask[:, :32] == 0).all() and (mask[:, 32:] > 0).all()
    polygons = tmp_path / "v.gpkg"
    status, events = cli(capsys, "vectorize", "--prob", prob, "--out", polygons, "--threshold", 0)
    assert status == 0, events
    ds = gdal.OpenEx(str(polygons))  # keep the dataset alive while its layer is read
    x_min = min(f.GetGeometryRef().GetEnvelope()[0] for f in ds.GetLayer(0))
    assert x_min >= 500_000.0 + 32 * 10.0  # no polygon reaches into the nodata columns


def test_nodata_pixels_are_invalid_in_training_tiles(tmp_path, write_raster, scene):
    from core.data.tiles import pair_tiles
    from core.data.tilesets import load_tiles
    from core.io.stretch import compute_stretch

    before = scene(64, 64, 3)
    before[:, :10, :] = 0
    a = write_raster(tmp_path / "a.tif", before, nodata=0)
    b = write_raster(tmp_path / "b.tif", scene(64, 64, 3, seed=3))
    with RasterPair.open(a, b) as pair:
        tiles = pair_tiles(pair, 32)
        tile_set = load_tiles(pair, compute_stretch(pair), tiles, [0] * len(tiles), 32, "p")
    top = [i for i, t in enumerate(tiles) if t.window.row == 0]
    assert top and all(not tile_set.valid[i, :10].any() for i in top)
    assert all(tile_set.valid[i, 10:].all() for i in top)


# --- small rasters --------------------------------------------------------------------------


def test_rasters_smaller_than_one_tile_give_one_padded_tile(tmp_path, write_raster, scene, capsys):
    a = write_raster(tmp_path / "a.tif", scene(20, 12, 1, seed=1))
    b = write_raster(tmp_path / "b.tif", scene(20, 12, 1, seed=2))
    tags = tmp_path / "t.gpkg"
    status, events = cli(capsys, "grid", "-a", a, "-b", b, "--tile", 256, "--out", tags)
    assert status == 0, events
    tiles = read_tags(tags).tiles
    assert len(tiles) == 1 and (tiles[0].tile.window.width, tiles[0].tile.window.height) == (20, 12)
    out = tmp_path / "c.tif"
    status, events = cli(capsys, "detect", "--method", "cva", "-a", a, "-b", b, "--out", out)
    assert status == 0, events
    from core.data.tilesets import load_tiles
    from core.io.stretch import compute_stretch

    with RasterPair.open(a, b) as pair:
        padded = load_tiles(pair, compute_stretch(pair), [tiles[0].tile], [1], 256, "small")
    assert padded.before.shape == (1, 1, 256, 256)
    assert padded.valid[0, :12, :20].all() and not padded.valid[0, 12:, :].any()


def test_one_band_pair_runs_grid_and_detect(tmp_path, write_raster, scene, capsys):
    a = write_raster(tmp_path / "a.tif", scene(64, 64, 1, seed=1))
    b = write_raster(tmp_path / "b.tif", scene(64, 64, 1, seed=2))
    status, events = cli(
        capsys, "grid", "-a", a, "-b", b, "--tile", 32, "--out", tmp_path / "t.gpkg"
    )
    assert status == 0, events
    out = tmp_path / "c.tif"
    status, events = cli(capsys, "detect", "--method", "cva", "-a", a, "-b", b, "--out", out)
    assert status == 0 and gdal.Open(str(out)).RasterCount == 1


@pytest.mark.parametrize(
    ("option", "says"),
    [(["--tile", 4], "Tile size 4 is too small"), (["--stride", -3], "negative")],
)
def test_tile_and_stride_out_of_range(tmp_path, pair, capsys, option, says):
    a, b = pair
    out = tmp_path / "t.gpkg"
    status, events = cli(capsys, "grid", "-a", a, "-b", b, *option, "--out", out)
    assert status == 2 and says in error_of(events)
    assert not out.exists()
