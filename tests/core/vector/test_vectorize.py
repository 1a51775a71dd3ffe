"""Tests of core.vector.vectorize on small known masks and on a real change label."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import fiona
import numpy as np
import pytest
from osgeo import gdal, osr
from shapely.geometry import shape

from core.callbacks import Callbacks
from core.errors import Canceled, KdmsiError
from core.vector.vectorize import VectorizeParams, vectorize

gdal.UseExceptions()

PIXEL = 10.0
ORIGIN = (500000.0, 5000000.0)
DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def utm33() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_tif(path: Path, array: np.ndarray, georef: bool = True, nodata=None) -> Path:
    types = {np.dtype(np.float32): gdal.GDT_Float32, np.dtype(np.uint8): gdal.GDT_Byte}
    rows, cols = array.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, 1, types[array.dtype])
    if georef:
        ds.SetGeoTransform((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
        ds.SetSpatialRef(utm33())
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.WriteArray(array)
    ds = None
    return path


def read(path: Path, layer: str | None = None) -> tuple[list[dict], object]:
    with fiona.open(path, layer=layer) as src:
        return [{"geom": shape(f["geometry"]), **dict(f["properties"])} for f in src], src.crs_wkt


def same_crs(wkt: str, other: osr.SpatialReference) -> bool:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return bool(srs.IsSame(other))


def square_with_hole() -> np.ndarray:
    prob = np.full((9, 9), 0.1, np.float32)
    prob[2:7, 2:7] = 0.8
    prob[4, 4] = 0.2
    return prob


def test_square_with_hole_keeps_hole_and_exact_area(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    result = vectorize(src, tmp_path / "out.shp", VectorizeParams())
    assert result.count == 1
    assert result.total_area == 24 * PIXEL**2
    feats, _crs = read(tmp_path / "out.shp")
    poly = feats[0]["geom"]
    assert len(poly.interiors) == 1
    assert shape(poly.interiors[0]).area == 0  # a ring
    assert poly.area == 24 * PIXEL**2
    assert feats[0]["area"] == 24 * PIXEL**2
    assert poly.bounds == (ORIGIN[0] + 20, ORIGIN[1] - 70, ORIGIN[0] + 70, ORIGIN[1] - 20)


@pytest.mark.parametrize(("connectivity", "expected"), [(4, 2), (8, 1)])
def test_diagonal_pixels_connectivity(tmp_path, connectivity, expected):
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = mask[2, 2] = 1
    src = write_tif(tmp_path / "m.tif", mask)
    out = tmp_path / f"c{connectivity}.gpkg"
    result = vectorize(src, out, VectorizeParams(connectivity=connectivity))
    assert result.count == expected
    assert result.total_area == 2 * PIXEL**2
    feats, _crs = read(out)
    assert len(feats) == expected
    assert sum(f["area"] for f in feats) == 2 * PIXEL**2


def test_min_area_drops_small_polygon(tmp_path):
    mask = np.zeros((6, 6), np.uint8)
    mask[0:2, 0:2] = 1  # 400 m2
    mask[4, 4] = 1  # 100 m2
    src = write_tif(tmp_path / "m.tif", mask)
    assert vectorize(src, tmp_path / "all.gpkg", VectorizeParams()).count == 2
    result = vectorize(src, tmp_path / "big.gpkg", VectorizeParams(min_area=150))
    assert (result.count, result.total_area) == (1, 400.0)
    # exactly the minimum area is kept
    assert vectorize(src, tmp_path / "eq.gpkg", VectorizeParams(min_area=100)).count == 2


def test_min_area_with_small_polygons_first(tmp_path):
    prob = np.zeros((12, 12), np.float32)
    prob[0, ::2] = 0.6  # six single pixels scanned first
    prob[4:8, 3:9] = 0.9  # 24 pixels
    prob[10, 0] = 0.7
    src = write_tif(tmp_path / "p.tif", prob)
    out = tmp_path / "out.shp"
    result = vectorize(src, out, VectorizeParams(min_area=2 * PIXEL**2))
    assert (result.count, result.total_area) == (1, 24 * PIXEL**2)
    (feat,), _crs = read(out)
    assert (feat["mean_prob"], feat["max_prob"]) == (pytest.approx(0.9), pytest.approx(0.9))


def test_mean_and_max_prob_match_numpy(tmp_path):
    rng = np.random.default_rng(3)
    prob = rng.uniform(0.0, 0.49, (12, 12)).astype(np.float32)
    prob[1:4, 1:5] = rng.uniform(0.5, 1.0, (3, 4))  # 12 pixels
    prob[7:11, 6:11] = rng.uniform(0.5, 1.0, (4, 5))  # 20 pixels
    src = write_tif(tmp_path / "p.tif", prob)
    vectorize(src, tmp_path / "out.gpkg", VectorizeParams())
    feats, _crs = read(tmp_path / "out.gpkg")
    by_area = {round(f["area"]): f for f in feats}
    assert sorted(by_area) == [1200, 2000]
    for area, block in ((1200, prob[1:4, 1:5]), (2000, prob[7:11, 6:11])):
        values = block.astype(np.float64)
        assert by_area[area]["mean_prob"] == pytest.approx(values.mean(), rel=1e-12)
        assert by_area[area]["max_prob"] == values.max()


def test_shapefile_reopens_with_raster_crs(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    out = tmp_path / "out.shp"
    vectorize(src, out, VectorizeParams())
    for ext in (".shp", ".shx", ".dbf", ".prj"):
        assert out.with_suffix(ext).is_file()
    assert not list(tmp_path.glob(".*partial*"))
    _feats, crs_wkt = read(out)
    assert same_crs(crs_wkt, utm33())


def test_geopackage_output(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    out = tmp_path / "changes.gpkg"
    result = vectorize(src, out, VectorizeParams())
    assert result.path == out
    assert fiona.listlayers(out) == ["changes"]
    feats, crs_wkt = read(out, "changes")
    assert same_crs(crs_wkt, utm33())
    assert len(feats) == 1
    assert len(feats[0]["geom"].interiors) == 1
    assert feats[0]["mean_prob"] == pytest.approx(0.8)
    assert feats[0]["max_prob"] == pytest.approx(0.8)


def test_ungeoreferenced_raster_uses_qgis_pixel_coordinates(tmp_path):
    # QGIS shows an image without georeferencing with x = column and y = -row.
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:6] = 1
    src = write_tif(tmp_path / "m.tif", mask, georef=False)
    result = vectorize(src, tmp_path / "out.gpkg", VectorizeParams())
    assert (result.count, result.total_area) == (1, 8.0)
    feats, _crs = read(tmp_path / "out.gpkg")
    assert feats[0]["geom"].bounds == (2.0, -3.0, 6.0, -1.0)
    with closing(sqlite3.connect(tmp_path / "out.gpkg")) as db:
        (srs_id,) = db.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()
    assert srs_id == -1  # GeoPackage's "undefined Cartesian", not 0 "undefined geographic"
    vectorize(src, tmp_path / "out.shp", VectorizeParams())
    feats, crs_wkt = read(tmp_path / "out.shp")
    assert not crs_wkt
    assert not (tmp_path / "out.prj").exists()
    assert feats[0]["geom"].bounds == (2.0, -3.0, 6.0, -1.0)


def test_nodata_never_becomes_polygons(tmp_path):
    prob = np.zeros((6, 6), np.float32)
    prob[0:2, 0:2] = 0.9
    prob[4:6, 4:6] = 7.0  # nodata, above any threshold
    prob[0, 5] = np.nan
    src = write_tif(tmp_path / "p.tif", prob, nodata=7.0)
    result = vectorize(src, tmp_path / "out.gpkg", VectorizeParams(threshold=0.0))
    # threshold 0: every valid pixel is change, nodata and NaN are not
    assert result.total_area == (36 - 4 - 1) * PIXEL**2
    feats, _crs = read(tmp_path / "out.gpkg")
    union = feats[0]["geom"]
    assert not union.contains(shape({"type": "Point", "coordinates": (ORIGIN[0] + 55, 0)}))
    assert feats[0]["max_prob"] == pytest.approx(0.9)


def test_byte_mask_0_255_is_scaled(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[0:2, 0:3] = 255
    mask[3, 3] = 127  # 127/255 < 0.5
    src = write_tif(tmp_path / "m.tif", mask)
    result = vectorize(src, tmp_path / "out.gpkg", VectorizeParams())
    assert (result.count, result.total_area) == (1, 6 * PIXEL**2)
    feats, _crs = read(tmp_path / "out.gpkg")
    assert feats[0]["mean_prob"] == 1.0
    assert feats[0]["max_prob"] == 1.0


def test_simplify_reduces_vertices_and_keeps_hole(tmp_path):
    prob = np.zeros((20, 20), np.float32)
    for row in range(2, 18):  # staircase edge on the right
        prob[row, 2 : 4 + row // 2] = 1.0
    prob[8:10, 4:6] = 0.0  # hole
    src = write_tif(tmp_path / "p.tif", prob)
    plain = vectorize(src, tmp_path / "plain.gpkg", VectorizeParams())
    simple = vectorize(src, tmp_path / "simple.gpkg", VectorizeParams(simplify=PIXEL))
    assert plain.count == simple.count == 1
    (before,), _ = read(tmp_path / "plain.gpkg")
    (after,), _ = read(tmp_path / "simple.gpkg")
    assert len(after["geom"].exterior.coords) < len(before["geom"].exterior.coords)
    assert len(after["geom"].interiors) == 1
    assert after["geom"].is_valid
    assert after["area"] == pytest.approx(after["geom"].area)
    assert simple.total_area == pytest.approx(plain.total_area, rel=0.1)


def test_nothing_above_threshold_writes_empty_layer(tmp_path):
    src = write_tif(tmp_path / "p.tif", np.zeros((3, 3), np.float32))
    result = vectorize(src, tmp_path / "out.shp", VectorizeParams())
    assert (result.count, result.total_area) == (0, 0.0)
    feats, _crs = read(tmp_path / "out.shp")
    assert feats == []


def test_existing_output_refused_unless_overwrite(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    out = tmp_path / "out.shp"
    vectorize(src, out, VectorizeParams())
    with pytest.raises(KdmsiError, match=r"out\.shp"):
        vectorize(src, out, VectorizeParams())
    out.with_suffix(".qix").write_bytes(b"stale index")
    result = vectorize(src, out, VectorizeParams(min_area=1e9), overwrite=True)
    assert result.count == 0
    assert read(out)[0] == []
    assert not out.with_suffix(".qix").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_unknown_suffix_names_the_file(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    with pytest.raises(KdmsiError, match=r"polygons\.geojson"):
        vectorize(src, tmp_path / "polygons.geojson", VectorizeParams())


def test_bad_inputs_give_kdmsi_errors(tmp_path):
    with pytest.raises(KdmsiError, match=r"missing\.tif"):
        vectorize(tmp_path / "missing.tif", tmp_path / "o.gpkg", VectorizeParams())
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(KdmsiError, match=r"junk\.tif"):
        vectorize(tmp_path / "junk.tif", tmp_path / "o.gpkg", VectorizeParams())
    with pytest.raises(KdmsiError):
        VectorizeParams(connectivity=6)
    with pytest.raises(KdmsiError):
        VectorizeParams(min_area=-1)


def test_progress_and_cancel(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    fractions: list[float] = []
    callbacks = Callbacks(progress=lambda f, _m: fractions.append(f))
    vectorize(src, tmp_path / "a.gpkg", VectorizeParams(), callbacks)
    assert fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    with pytest.raises(Canceled):
        vectorize(src, tmp_path / "b.gpkg", VectorizeParams(), Callbacks(is_canceled=lambda: True))
    assert not (tmp_path / "b.gpkg").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_cancel_inside_gdal_polygonize(tmp_path):
    src = write_tif(tmp_path / "p.tif", square_with_hole())
    calls: list[int] = []

    def canceled() -> bool:  # False for the one thresholding chunk, then True
        calls.append(1)
        return len(calls) > 1

    messages: list[str] = []
    callbacks = Callbacks(progress=lambda _f, m: messages.append(m), is_canceled=canceled)
    with pytest.raises(Canceled):
        vectorize(src, tmp_path / "c.shp", VectorizeParams(), callbacks)
    assert "polygonizing" not in messages
    assert list(tmp_path.iterdir()) == [src]


def test_real_change_label(tmp_path):
    labels = sorted((DATA / "geo_oscd_mumbai" / "label").glob("*.tif"))
    if not labels:
        pytest.skip(f"real data not found under {DATA.resolve()} (geo_oscd_mumbai/label/*.tif)")
    ds = gdal.Open(str(labels[0]))
    changed = int(np.count_nonzero(ds.GetRasterBand(1).ReadAsArray() == 255))
    gt = ds.GetGeoTransform()
    expected = changed * abs(gt[1] * gt[5])
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    for out in (tmp_path / "mumbai.shp", tmp_path / "mumbai.gpkg"):
        result = vectorize(labels[0], out, VectorizeParams(connectivity=8))
        feats, crs_wkt = read(out)
        assert same_crs(crs_wkt, wgs84)
        assert len(feats) == result.count > 0
        assert result.total_area == pytest.approx(expected, rel=1e-6)
        assert sum(f["geom"].area for f in feats) == pytest.approx(expected, rel=1e-6)
        assert sum(f["area"] for f in feats) == pytest.approx(expected, rel=1e-6)
        assert all(f["mean_prob"] == f["max_prob"] == 1.0 for f in feats)


@pytest.mark.parametrize("suffix", [".shp", ".gpkg"])
def test_binary_mask_fast_path_matches_general_path(tmp_path, suffix):
    # A 0/1 Byte mask is polygonized as it is and copied by GDAL; the same mask as float32
    # goes through thresholding, labelling (statistics per label) and the attribute loop.
    rng = np.random.default_rng(5)
    mask = (rng.random((40, 50)) < 0.35).astype(np.uint8)
    mask[5:15, 5:20] = 1
    mask[9, 9] = 0  # a hole
    byte = write_tif(tmp_path / "byte.tif", mask)
    floats = write_tif(tmp_path / "float.tif", mask.astype(np.float32))
    for params in (VectorizeParams(), VectorizeParams(min_area=250.0, connectivity=8)):
        fast = vectorize(byte, tmp_path / f"fast{suffix}", params, overwrite=True)
        slow = vectorize(floats, tmp_path / f"slow{suffix}", params, overwrite=True)
        assert fast.count == slow.count > 1
        assert fast.total_area == pytest.approx(slow.total_area, rel=1e-12)
        fast_feats, fast_crs = read(tmp_path / f"fast{suffix}")
        slow_feats, _crs = read(tmp_path / f"slow{suffix}")
        assert same_crs(fast_crs, utm33())
        assert len(fast_feats) == fast.count
        outlines = [sorted((round(f["area"], 6), f["geom"].bounds) for f in feats)
                    for feats in (fast_feats, slow_feats)]  # fmt: skip
        assert outlines[0] == outlines[1]
        assert all(f["mean_prob"] == f["max_prob"] == 1.0 for f in fast_feats)
        assert sum(f["geom"].area for f in fast_feats) == pytest.approx(fast.total_area)
        assert all(f["area"] >= params.min_area for f in fast_feats)


def test_unreadable_pixels_blame_the_input_not_the_output(tmp_path):
    # the header and directory are intact but half the pixel blocks are gone: opening works,
    # polygonizing fails; the output folder is writable, so the message points at the input
    prob = (np.random.default_rng(3).random((256, 256)) > 0.5).astype(np.float32)
    path = tmp_path / "p.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 256, 256, 1, gdal.GDT_Float32,
                                              ["TILED=YES", "COMPRESS=DEFLATE"])  # fmt: skip
    ds.GetRasterBand(1).WriteArray(prob)
    ds = None
    data = path.read_bytes()
    assert int.from_bytes(data[4:8], "little") < len(data) // 4  # the directory comes first
    path.write_bytes(data[: len(data) // 2])  # the later tiles are cut off
    with pytest.raises(KdmsiError, match=r"p\.tif is probably damaged \(export it again\)"):
        vectorize(path, tmp_path / "out.shp", VectorizeParams())
    assert not list(tmp_path.glob("out.*")) and not list(tmp_path.glob(".out*"))
