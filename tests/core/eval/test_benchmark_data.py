"""Tests of the benchmark data: every pair tiled, tags from masks, a seeded train/test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.eval.benchmark_data import load_benchmark_data

gdal.UseExceptions()

LEVIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "levir_cd_bit"


def load(roots: list[Path], tile: int, fraction: float = 0.7, seed: int = 0):
    return load_benchmark_data(roots, tile, None, fraction, seed, Callbacks())


# --- the real LEVIR-CD sample -------------------------------------------------------------


@pytest.fixture(scope="module")
def levir(require):
    root = require(LEVIR)
    return root, load([root], 128)


def test_levir_train_and_test_partition_all_tiles(levir):
    root, data = levir
    pairs = sorted(p.stem for p in (root / "A").glob("*.png"))
    assert len(data.tiles) == 4 * len(pairs)  # 256 px pairs, 128 px tiles
    assert data.tiles.tile_size == 128
    assert not set(data.train) & set(data.test)
    assert sorted([*data.train, *data.test]) == list(range(len(data.tiles)))
    assert np.all(np.diff(data.train) > 0) and np.all(np.diff(data.test) > 0)
    assert {n.split("#")[0] for n in data.tiles.names} == {f"{root.name}/{p}" for p in pairs}


def test_levir_split_is_stratified(levir):
    _, data = levir
    labels = data.tiles.labels
    for value in (0, 1):
        count = int((labels == value).sum())
        in_test = int((labels[data.test] == value).sum())
        assert in_test == min(round(0.3 * count), max(count - 1, 0)), value
    summary = data.summary
    assert summary["tiles"] == len(data.tiles)
    assert summary["train"]["changed"] + summary["test"]["changed"] == int(labels.sum())
    assert 0.0 < summary["test_changed_pixel_fraction"] < 1.0


def test_levir_split_is_deterministic_per_seed(levir):
    root, data = levir
    again = load([root], 128, seed=0)
    other = load([root], 128, seed=1)
    assert np.array_equal(data.train, again.train) and np.array_equal(data.test, again.test)
    assert np.array_equal(data.tiles.before, again.tiles.before)
    assert not np.array_equal(data.test, other.test)
    assert len(data.test) == len(other.test)


def test_levir_truth_matches_the_label_pixels(levir):
    root, data = levir
    labels = {}
    for i, name in enumerate(data.tiles.names):
        pair = name.split("/")[1].split("#")[0]
        if pair not in labels:
            labels[pair] = gdal.Open(str(root / "label" / f"{pair}.png")).ReadAsArray() > 0
        window = data.tiles.windows[i]
        assert np.array_equal(data.truth[i], labels[pair][window.slices]), name
        assert data.tiles.labels[i] == int(data.truth[i].any()), name
    assert data.truth.dtype == bool and data.truth.shape == data.tiles.valid.shape


def test_levir_cva_thresholds(levir):
    _, data = levir
    assert data.cva_threshold.shape == (len(data.tiles),)
    assert (data.cva_threshold > 0).all()
    assert (data.cva_threshold < np.sqrt(3)).all()
    pairs = np.array([n.split("#")[0] for n in data.tiles.names])
    for pair in set(pairs):
        assert len(set(data.cva_threshold[pairs == pair])) == 1, "one threshold per pair"


# --- a tiny synthetic dataset folder ------------------------------------------------------


def write_png(path: Path, array: np.ndarray) -> None:
    array = array if array.ndim == 3 else array[None]
    mem = gdal.GetDriverByName("MEM").Create("", array.shape[2], array.shape[1], array.shape[0])
    for i, band in enumerate(array):
        mem.GetRasterBand(i + 1).WriteArray(band)
    gdal.GetDriverByName("PNG").CreateCopy(str(path), mem)


# Changed 32 px tiles (row-major ids of a 64 px pair) of each pair.
CHANGED = {"p1": [0], "p2": [3], "p3": [1, 2], "p4": []}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, scene):
    root = tmp_path_factory.mktemp("data") / "tiny"
    for sub in ("A", "B", "label", "list"):
        (root / sub).mkdir(parents=True)
    for k, (name, changed) in enumerate(CHANGED.items()):
        before = scene(64, 64, seed=k)
        after = before.copy()
        label = np.zeros((64, 64), dtype=np.uint8)
        for tile in changed:
            r, c = 32 * (tile // 2) + 5, 32 * (tile % 2) + 9
            after[:, r : r + 10, c : c + 12] = 250
            label[r : r + 10, c : c + 12] = 255
        write_png(root / "A" / f"{name}.png", before)
        write_png(root / "B" / f"{name}.png", after)
        write_png(root / "label" / f"{name}.png", label)
    (root / "list" / "train.txt").write_text("p1.png\n\n")
    (root / "list" / "test.txt").write_text("p2\n")
    return root


def test_lists_send_whole_pairs_to_their_side(folder):
    data = load([folder], 32, fraction=0.5)
    names = np.array([n.split("#")[0] for n in data.tiles.names])
    assert list(dict.fromkeys(names)) == [f"tiny/{p}" for p in CHANGED]
    index = {p: np.flatnonzero(names == f"tiny/{p}") for p in CHANGED}
    assert set(index["p1"]) <= set(data.train)
    assert set(index["p2"]) <= set(data.test)
    free = np.concatenate([index["p3"], index["p4"]])
    assert sorted([*data.train, *data.test]) == list(range(16))
    # The 8 unlisted tiles (2 changed, 6 unchanged) are split per class at 50 %.
    free_test = np.intersect1d(free, data.test)
    assert (data.tiles.labels[free_test] == 1).sum() == 1
    assert (data.tiles.labels[free_test] == 0).sum() == 3


def test_tags_and_truth_of_the_synthetic_folder(folder):
    data = load([folder], 32)
    for i, name in enumerate(data.tiles.names):
        pair, tile = name.split("/")[1].split("#")
        expected = int(int(tile) in CHANGED[pair])
        assert data.tiles.labels[i] == expected, name
        assert data.truth[i].sum() == expected * 10 * 12, name
    assert data.tiles.valid.all()


def test_pooled_folders_keep_their_names_apart(folder, tmp_path):
    other = tmp_path / "other"
    for sub in ("A", "B", "label"):
        (other / sub).mkdir(parents=True)
        src = folder / sub / "p3.png"
        (other / sub / "p3.png").write_bytes(src.read_bytes())
    data = load([folder, other], 32)
    assert len(data.tiles) == 20
    assert sum(n.startswith("other/p3#") for n in data.tiles.names) == 4
    assert sum(n.startswith("tiny/p3#") for n in data.tiles.names) == 4


def test_a_pair_without_mask_is_a_user_error(folder, tmp_path):
    root = tmp_path / "nolabel"
    for sub in ("A", "B"):
        (root / sub).mkdir(parents=True)
        (root / sub / "p1.png").write_bytes((folder / sub / "p1.png").read_bytes())
    with pytest.raises(KdmsiError, match="p1"):
        load([root], 32)
