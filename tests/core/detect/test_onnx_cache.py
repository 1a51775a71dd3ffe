"""The cache of ONNX exports: a ``.pt`` model is exported once, not at every detect.

Every test gets its own cache folder (``KDMSI_CACHE_DIR``); the model is test_onnx's random
EfficientNet-Lite0 student.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from test_onnx import model  # noqa: F401 - the model file fixture

from core.detect import onnx as onnx_module
from core.detect import onnx_cache
from core.detect.pair import detect_with_model
from core.detect.params import DetectParams

SINGLE = DetectParams(scales=(1.0,), flip=False, device="cpu", engine="onnx")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder, and a count of the exports made."""
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(tmp_path / "cache"))
    exports = []
    real = onnx_module.export_onnx
    monkeypatch.setattr(
        onnx_module, "export_onnx", lambda *a, **k: exports.append(a) or real(*a, **k)
    )
    return tmp_path / "cache" / "onnx", exports


@pytest.fixture
def pair(tmp_path, write_raster, scene):
    before = write_raster(tmp_path / "a.tif", scene(70, 50, seed=1))
    return before, write_raster(tmp_path / "b.tif", scene(70, 50, seed=2))


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_a_model_is_exported_once_and_the_export_reused(model, cache, pair, tmp_path):  # noqa: F811
    folder, exports = cache
    detect_with_model(*pair, model, tmp_path / "first.tif", SINGLE)
    detect_with_model(*pair, model, tmp_path / "second.tif", SINGLE)
    assert len(exports) == 1
    cached = list(folder.iterdir())
    assert [p.name for p in cached] == [onnx_cache.export_name(model)]  # no partial file left
    np.testing.assert_array_equal(read(tmp_path / "first.tif"), read(tmp_path / "second.tif"))


def test_another_model_file_gets_its_own_export(model, cache, pair, tmp_path):  # noqa: F811
    folder, exports = cache
    changed = Path(shutil.copy(model, tmp_path / "changed.pt"))
    with changed.open("ab") as stream:  # the same network, but another file: a new name
        stream.write(b"\0")
    assert onnx_cache.export_name(changed) != onnx_cache.export_name(model)
    onnx_cache.onnx_export_for(model, tmp_path)
    onnx_cache.onnx_export_for(changed, tmp_path)
    assert len(exports) == 2 and len(list(folder.glob("student-*.onnx"))) == 2


def test_a_damaged_cached_export_is_made_again(model, cache, pair, tmp_path):  # noqa: F811
    _, exports = cache
    path, from_cache = onnx_cache.onnx_export_for(model, tmp_path)
    assert not from_cache
    path.write_bytes(b"not an onnx file")  # a disk that filled up, an interrupted copy
    detect_with_model(*pair, model, tmp_path / "map.tif", SINGLE)
    assert len(exports) == 2 and path.stat().st_size > 1000
    assert onnx_cache.onnx_export_for(model, tmp_path) == (path, True)


def test_an_unwritable_cache_exports_to_the_runs_scratch_folder(model, pair, tmp_path, monkeypatch):  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made below a file")
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(blocker))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    path, from_cache = onnx_cache.onnx_export_for(model, scratch)
    assert (path, from_cache) == (scratch / "student.onnx", False) and path.is_file()
    detect_with_model(*pair, model, tmp_path / "map.tif", SINGLE)
    assert read(tmp_path / "map.tif").shape == (50, 70)


def test_only_the_most_recently_used_exports_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(tmp_path))
    folder = onnx_cache.cache_folder()
    folder.mkdir(parents=True)
    for age in range(onnx_cache.KEEP + 3):
        path = folder / f"student-{age:02d}.onnx"
        path.write_bytes(b"x")
        os.utime(path, (1e9 - age, 1e9 - age))  # student-00 is the newest
    onnx_cache._prune(folder, onnx_cache.KEEP)
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == [f"student-{age:02d}.onnx" for age in range(onnx_cache.KEEP)]


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(onnx_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_cache.cache_folder() == tmp_path / "xdg" / "kdmsi" / "onnx"
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(tmp_path / "mine"))
    assert onnx_cache.cache_folder() == tmp_path / "mine" / "onnx"
