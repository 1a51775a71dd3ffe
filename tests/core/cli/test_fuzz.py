"""Fuzzing the public entry points with mutated GeoTIFF and GeoPackage bytes.

Seeded mutants of a small valid GeoTIFF (random byte flips, truncations, zeroed ranges) go
through ``kdmsi grid``, ``detect --method cva``, ``vectorize`` and ``evaluate``; mutants of a
small tag GeoPackage go through train's tag loading. Each case must end with exit status 0 or 2
(never 1, a crash or a hang: pytest-timeout stops a case after 60 s). The fast suite tries
``FAST_CASES`` GeoTIFF and ``FAST_CASES`` GeoPackage mutants; ``-m slow`` tries ``SLOW_CASES``
more of each.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from core.callbacks import Callbacks
from core.cli.main import main
from core.data.trainsets import check_tags, tiles_from_tag_layer
from core.errors import KdmsiError

gdal.UseExceptions()
FAST_CASES = 60
SLOW_CASES = 500
COMMANDS = ("grid", "cva", "vectorize", "evaluate")


def mutate(data: bytes, seed: int) -> bytes:
    """A seeded mutant: flipped bytes, a truncation or a zeroed range (sometimes several)."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["flip", "truncate", "zero"], p=[0.6, 0.2, 0.2])
        if kind == "flip":
            # Most of the structure sits in the first few hundred bytes: aim there half the time.
            limit = len(out) if rng.random() < 0.5 else min(len(out), 512)
            for index in rng.integers(0, limit, size=int(rng.integers(1, 9))):
                out[index] ^= int(rng.integers(1, 256))
        elif kind == "truncate":
            out = out[: int(rng.integers(0, len(out)))]
        else:
            start = int(rng.integers(0, len(out)))
            end = min(len(out), start + int(rng.integers(1, 2048)))
            out[start:end] = bytes(end - start)
        if not out:
            break
    return bytes(out)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, write_raster, scene):
    """The valid files every mutant starts from: a pair, its tag layer (tagged) and a label."""
    root = tmp_path_factory.mktemp("fuzz_seeds")
    a = write_raster(root / "a.tif", scene(48, 40, 3, seed=1))
    b = write_raster(root / "b.tif", scene(48, 40, 3, seed=2))
    label = write_raster(root / "label.tif", (scene(48, 40, 1, seed=3) > 128).astype(np.uint8))
    tags = root / "tags.gpkg"
    assert quiet(["grid", "-a", a, "-b", b, "--tile", 16, "--labels", label, "--out", tags]) == 0
    return {"a": a, "b": b, "label": label, "tags": tags}


def quiet(argv: list) -> int:
    """Run the command line with its output captured; return the exit status."""
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        return main([str(a) for a in argv] + ["--jsonl"])


def run_geotiff_case(seed: int, seeds: dict, folder: Path) -> int:
    """One mutant GeoTIFF through one of the raster commands; returns the exit status."""
    command = COMMANDS[seed % len(COMMANDS)]
    mutant = folder / f"mutant_{seed}.tif"
    mutant.write_bytes(mutate(seeds["a"].read_bytes(), seed))
    a, b, label = seeds["a"], seeds["b"], seeds["label"]
    argv = {
        "grid": ["grid", "-a", mutant, "-b", b, "--tile", 16, "--out", folder / f"g{seed}.gpkg"],
        "cva": [
            "detect",
            "--method",
            "cva",
            "-a",
            a,
            "-b",
            mutant,
            "--out",
            folder / f"c{seed}.tif",
        ],
        "vectorize": ["vectorize", "--prob", mutant, "--out", folder / f"v{seed}.gpkg"],
        "evaluate": ["evaluate", "--pred", label, "--label", mutant],
    }[command]
    return quiet(argv)


def run_geopackage_case(seed: int, seeds: dict, folder: Path) -> str:
    """One mutant tag layer through train's tag loading; returns ``ok`` or ``error``."""
    mutant = folder / f"mutant_{seed}.gpkg"
    mutant.write_bytes(mutate(seeds["tags"].read_bytes(), seed))
    try:
        tiles = tiles_from_tag_layer(seeds["a"], seeds["b"], mutant, None, Callbacks())
        check_tags(tiles, str(mutant))
    except KdmsiError as exc:
        assert str(mutant) in str(exc)
        return "error"
    return "ok"


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if "partial" in p.name]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(FAST_CASES))
def test_mutated_geotiff(seed, seeds, tmp_path):
    assert run_geotiff_case(seed, seeds, tmp_path) in (0, 2)
    assert no_partial_files(tmp_path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(FAST_CASES))
def test_mutated_geopackage(seed, seeds, tmp_path):
    assert run_geopackage_case(seed, seeds, tmp_path) in ("ok", "error")


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(FAST_CASES, FAST_CASES + SLOW_CASES))
def test_mutated_geotiff_long_run(seed, seeds, tmp_path):
    assert run_geotiff_case(seed, seeds, tmp_path) in (0, 2)
    assert no_partial_files(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(FAST_CASES, FAST_CASES + SLOW_CASES))
def test_mutated_geopackage_long_run(seed, seeds, tmp_path):
    assert run_geopackage_case(seed, seeds, tmp_path) in ("ok", "error")
