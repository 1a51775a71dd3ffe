"""Tests of the generated synthetic scene used by the demo."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr

from core.data.synthetic import make_scene

gdal.UseExceptions()
SIZE = 96


def arrays(files) -> list[np.ndarray]:
    return [gdal.Open(str(p)).ReadAsArray() for p in (files.before, files.after, files.label)]


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene") / "a", size=SIZE, seed=3)


def test_same_seed_gives_the_same_scene(scene_files, tmp_path):
    again = make_scene(tmp_path / "b", size=SIZE, seed=3)
    for first, second in zip(arrays(scene_files), arrays(again)):
        assert first.tobytes() == second.tobytes()


def test_another_seed_gives_another_scene(scene_files, tmp_path):
    other = make_scene(tmp_path / "c", size=SIZE, seed=4)
    assert arrays(scene_files)[0].tobytes() != arrays(other)[0].tobytes()


def test_files_shapes_and_types(scene_files):
    assert scene_files.before.name == "before.tif" and scene_files.label.name == "change.tif"
    before, after, label = arrays(scene_files)
    assert before.shape == after.shape == (3, SIZE, SIZE)
    assert label.shape == (SIZE, SIZE)
    for path in (scene_files.before, scene_files.after, scene_files.label):
        ds = gdal.Open(str(path))
        assert ds.GetRasterBand(1).DataType == gdal.GDT_Byte
    assert set(np.unique(label)) == {0, 255}


def test_georeferenced_in_utm_33n(scene_files):
    for path in (scene_files.before, scene_files.after, scene_files.label):
        ds = gdal.Open(str(path))
        srs = ds.GetSpatialRef()
        expected = osr.SpatialReference()
        expected.ImportFromEPSG(32633)
        assert srs.IsSame(expected), path
        assert ds.GetGeoTransform() == (500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5)


def test_change_mask_marks_where_the_images_differ(scene_files):
    before, after, label = arrays(scene_files)
    changed = label > 0
    assert 0 < changed.mean() < 0.9
    diff = np.abs(after.astype(float) - before.astype(float)).mean(axis=0)
    assert diff[changed].mean() > 2 * diff[~changed].mean()


def test_overwrites_an_existing_scene(scene_files):
    first = arrays(scene_files)
    files = make_scene(scene_files.before.parent, size=SIZE, seed=3)
    assert files == scene_files
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, arrays(files)))
