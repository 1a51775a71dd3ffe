"""Shared fixtures: the real samples in ../shared/data and small synthetic GeoTIFF writers.

The real samples are not part of the repository (most have research licences); tests that need
them skip with a clear reason when the folder is absent, as in a user's fresh clone.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pytest
from osgeo import gdal, gdal_array, osr

gdal.UseExceptions()
osr.UseExceptions()

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# A 10 m north-up grid in UTM 33N (EPSG:32633), the default of the synthetic writers.
UTM_ORIGIN = (500_000.0, 4_600_000.0)
UTM_TRANSFORM = (UTM_ORIGIN[0], 10.0, 0.0, UTM_ORIGIN[1], 0.0, -10.0)


@pytest.fixture(autouse=True, scope="session")
def _own_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the ONNX exports detect caches (and any worker process's) out of the user's cache."""
    from core.detect.onnx_cache import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("kdmsi-cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


def require(path: Path) -> Path:
    """Return ``path``, or skip the test when the real sample is not there."""
    path = Path(path)
    if not path.exists():
        pytest.skip(
            f"real samples not found at {path}; they live in ../shared/data beside the repository"
        )
    return path


def srs_of(crs: str) -> osr.SpatialReference:
    """An ``osr.SpatialReference`` from any user string (``EPSG:32633``, WKT...)."""
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    return srs


def write_raster(
    path: Path,
    array: np.ndarray,
    geotransform: Optional[Sequence[float]] = UTM_TRANSFORM,
    crs: Optional[str] = "EPSG:32633",
    nodata: Optional[float] = None,
) -> Path:
    """Write a ``[rows, cols]`` or ``[bands, rows, cols]`` array as a GeoTIFF.

    ``geotransform=None`` and ``crs=None`` write a raster without georeferencing.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    bands, rows, cols = array.shape
    data_type = gdal_array.NumericTypeCodeToGDALTypeCode(array.dtype)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, bands, data_type)
    if geotransform is not None:
        ds.SetGeoTransform(tuple(geotransform))
    if crs:
        ds.SetProjection(srs_of(crs).ExportToWkt())
    for index in range(bands):
        band = ds.GetRasterBand(index + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(array[index])
    ds.FlushCache()
    ds = None
    return path


def scene(width: int, height: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth, textured ``uint8`` image ``[bands, rows, cols]`` (resamples without surprises)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((bands, height, width), dtype=np.uint8)
    for b in range(bands):
        value = np.zeros((height, width))
        for _ in range(4):
            fx, fy = rng.uniform(0.01, 0.06, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            value += np.sin(2 * np.pi * (fx * cols + fy * rows) + phase)
        out[b] = np.clip(128 + 28 * value, 0, 255).astype(np.uint8)
    return out


def read_array(path: Path, band: Optional[int] = None) -> np.ndarray:
    """All pixels of a raster (one band, or ``[bands, rows, cols]``)."""
    ds = gdal.Open(str(path))
    if band is not None:
        return ds.GetRasterBand(band).ReadAsArray()
    return ds.ReadAsArray()


@pytest.fixture(autouse=True, scope="session")
def _free_gdal_objects_before_qgis_exits(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect cyclic garbage before pytest-qgis calls ``exitQgis()`` at the end of the session.

    A GDAL dataset caught in a reference cycle (e.g. a frame of an exception kept by
    ``pytest.raises``) that is freed after QGIS (and with it GDAL) has shut down crashes the
    interpreter with a segmentation fault, failing an otherwise green run.
    """
    if request.config.pluginmanager.hasplugin("qgis"):
        request.getfixturevalue("qgis_app")  # set up first, so torn down after this fixture
    yield
    gc.collect()


@pytest.fixture(name="require", scope="session")
def require_fixture() -> Callable[[Path], Path]:
    """The :func:`require` helper, for tests that name their own sample file."""
    return require


@pytest.fixture(name="write_raster", scope="session")
def write_raster_fixture() -> Callable[..., Path]:
    """The :func:`write_raster` helper."""
    return write_raster


@pytest.fixture(name="scene", scope="session")
def scene_fixture() -> Callable[..., np.ndarray]:
    """The :func:`scene` helper."""
    return scene


@pytest.fixture(name="read_array", scope="session")
def read_array_fixture() -> Callable[..., np.ndarray]:
    """The :func:`read_array` helper."""
    return read_array


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real samples (../shared/data beside the project root); skips when absent."""
    return require(SHARED_DATA)


def _sample(shared_data: Path, folder: str) -> tuple[Path, Path, Path]:
    """``(before, after, label)`` of a one-pair sample folder."""
    root = require(shared_data / folder)
    files = [sorted((root / part).glob("*.tif")) for part in ("A", "B", "label")]
    if not all(files):
        pytest.skip(
            f"real samples not found at {root}; they live in ../shared/data beside the repository"
        )
    return files[0][0], files[1][0], files[2][0]


@pytest.fixture(scope="session")
def mumbai(shared_data: Path) -> tuple[Path, Path, Path]:
    """OSCD Mumbai: 4-band uint16 pair on one EPSG:4326 grid, and its 0/255 label."""
    return _sample(shared_data, "geo_oscd_mumbai")


@pytest.fixture(scope="session")
def hongkong(shared_data: Path) -> tuple[Path, Path, Path]:
    """OSCD Hong Kong: the two dates are on different EPSG:4326 grids."""
    return _sample(shared_data, "geo_oscd_hongkong")


@pytest.fixture(scope="session")
def levir_full(shared_data: Path) -> tuple[Path, Path, Path]:
    """One 1024x1024 ungeoreferenced RGB PNG pair of LEVIR-CD and its label."""
    root = shared_data / "levir_cd_full_scm"
    paths = tuple(require(root / part / "test_7.png") for part in ("A", "B", "label"))
    return paths  # type: ignore[return-value]
