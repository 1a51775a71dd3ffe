"""Tests of core.vector.writers: the oriented Shapefile copy equals GDAL's own rewinding."""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pytest
from osgeo import gdal
from shapely.geometry import shape

from core.vector import writers as vector_output
from core.vector.vectorize import VectorizeParams, vectorize


def nested_rings() -> np.ndarray:
    """Squares with holes holding islands with holes, plus random specks: every ring case."""
    rng = np.random.default_rng(11)
    mask = (rng.random((60, 70)) < 0.3).astype(np.uint8)
    mask[5:45, 5:45] = 1
    mask[10:40, 10:40] = 0  # hole
    mask[15:35, 15:35] = 1  # island in the hole
    mask[20:30, 20:30] = 0  # hole in the island
    mask[24:26, 24:26] = 1  # island in that hole
    return mask


def read(path: Path) -> list[dict]:
    with fiona.open(path) as src:
        return [{"geom": shape(f["geometry"]), **dict(f["properties"])} for f in src]


def spatialite_or_skip(monkeypatch) -> None:
    """Skip without SpatiaLite; else orient in SQL however few the polygons."""
    memory = gdal.GetDriverByName("Memory").Create("probe", 0, 0, 0, gdal.GDT_Unknown)
    if not vector_output.has_spatialite(memory):
        pytest.skip("this GDAL has no SpatiaLite: only GDAL's own rewinding runs here")
    monkeypatch.setattr(vector_output, "ORIENT_IN_SQL_FROM", 1)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_oriented_shapefile_is_byte_identical_to_gdal_rewinding(
    tmp_path, monkeypatch, write_raster, dtype
):
    spatialite_or_skip(monkeypatch)
    source = write_raster(tmp_path / "mask.tif", nested_rings().astype(dtype))
    params = VectorizeParams(min_area=150.0)
    ours = vectorize(source, tmp_path / "ours.shp", params)
    monkeypatch.setattr(vector_output, "has_spatialite", lambda dataset: False)
    gdals = vectorize(source, tmp_path / "gdal.shp", params)
    assert ours.count == gdals.count > 3
    assert ours.total_area == pytest.approx(gdals.total_area, rel=1e-12)
    for suffix in (".shp", ".shx", ".dbf"):
        assert (tmp_path / f"ours{suffix}").read_bytes() == (
            tmp_path / f"gdal{suffix}"
        ).read_bytes()
    features = read(tmp_path / "ours.shp")
    assert sum(f["geom"].area for f in features) == pytest.approx(ours.total_area)
    assert sum(len(f["geom"].interiors) for f in features) >= 2


def test_rewinding_option_is_restored(tmp_path, monkeypatch, write_raster):
    spatialite_or_skip(monkeypatch)
    gdal.SetThreadLocalConfigOption("SHAPE_REWIND_ON_WRITE", None)
    source = write_raster(tmp_path / "mask.tif", nested_rings())
    vectorize(source, tmp_path / "out.shp", VectorizeParams())
    assert gdal.GetThreadLocalConfigOption("SHAPE_REWIND_ON_WRITE", None) is None


def test_min_area_applies_on_the_sqlite_copy(tmp_path, monkeypatch, write_raster):
    spatialite_or_skip(monkeypatch)
    source = write_raster(tmp_path / "mask.tif", nested_rings())
    every = vectorize(source, tmp_path / "all.shp", VectorizeParams())
    large = vectorize(source, tmp_path / "large.shp", VectorizeParams(min_area=150.0))
    assert 0 < large.count < every.count
    features = read(tmp_path / "large.shp")
    assert len(features) == large.count
    assert min(f["area"] for f in features) >= 150.0


def test_few_polygons_are_rewound_by_gdal_without_loading_spatialite(
    tmp_path, monkeypatch, write_raster
):
    source = write_raster(tmp_path / "mask.tif", nested_rings())
    probed = []
    monkeypatch.setattr(vector_output, "has_spatialite", lambda dataset: probed.append(1))
    few = vectorize(source, tmp_path / "few.shp", VectorizeParams())
    assert few.count < vector_output.ORIENT_IN_SQL_FROM and not probed
    features = read(tmp_path / "few.shp")
    assert len(features) == few.count
    assert sum(f["geom"].area for f in features) == pytest.approx(few.total_area)
    assert sum(len(f["geom"].interiors) for f in features) >= 2  # holes read back as holes
