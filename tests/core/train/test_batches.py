"""Tests of mini-batches and augmentation: both dates (and targets) get the same transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.tilesets import TileSet
from core.io.windows import Window
from core.models.inputs import to_tensor
from core.train.batches import augment, batches

SIZE = 8


def coordinates(size: int = SIZE) -> np.ndarray:
    """``[size, size]`` ints whose value is ``row * size + col``: each pixel names its place."""
    return np.arange(size * size).reshape(size, size)


def dihedral(array: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of the last two axes."""
    out = []
    for k in range(4):
        rotated = np.rot90(array, k, axes=(-2, -1))
        out += [rotated, rotated[..., ::-1]]
    return out


def which_transform(array: np.ndarray, original: np.ndarray) -> int:
    matches = [i for i, t in enumerate(dihedral(original)) if np.array_equal(t, array)]
    assert len(matches) == 1, "not one of the 8 rotations/flips of the original"
    return matches[0]


def test_augment_transforms_dates_and_targets_alike():
    coords = coordinates()
    before = np.stack([coords, coords + 1000, coords + 2000])  # [bands, T, T]
    after = before + 5000
    target = coords.astype(np.float32)  # [T, T] pixel target
    weight = (coords % 2).astype(np.float32)
    seen = set()
    for seed in range(40):
        a, b, t, w = augment([before, after, target, weight], np.random.default_rng(seed))
        assert a.shape == before.shape and t.shape == target.shape
        # Each pixel of every output comes from the same place of its input.
        assert np.array_equal(b - a, np.full_like(a, 5000))
        assert np.array_equal(a[0], t.astype(a.dtype))
        assert np.array_equal(a[1], a[0] + 1000) and np.array_equal(a[2], a[0] + 2000)
        assert np.array_equal(w, (a[0] % 2).astype(np.float32))
        seen.add(which_transform(a[0], coords))
    assert seen == set(range(8)), "all 8 rotations/flips should occur"


def test_augment_is_reproducible_per_rng_state():
    arrays = [np.stack([coordinates()] * 2)]
    first = augment(arrays, np.random.default_rng(7))[0]
    again = augment(arrays, np.random.default_rng(7))[0]
    assert np.array_equal(first, again)


def make_tiles(n: int = 10) -> TileSet:
    """Tiles whose band 0 holds the tile index, bands 1-2 pixel coordinates, after = before + 1."""
    coords = coordinates().astype(np.uint8)
    before = np.zeros((n, 3, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        before[i, 0] = i
        before[i, 1] = coords
        before[i, 2] = coords + 100
    return TileSet(
        before,
        before + 1,
        np.ones((n, SIZE, SIZE), dtype=bool),
        (np.arange(n) % 2).astype(np.int8),
        [f"t#{i}" for i in range(n)],
        [Window(0, 0, SIZE, SIZE)] * n,
    )


def test_batches_without_rng_are_in_order_and_cover_all():
    tiles = make_tiles(10)
    got = list(batches(tiles, 4, None, use_augment=True))  # no rng: no shuffle, no augment
    assert [len(y) for _, _, y in got] == [4, 4, 2]
    a = np.concatenate([g[0] for g in got])
    assert np.array_equal(a, tiles.before)
    assert np.array_equal(np.concatenate([g[1] for g in got]), tiles.after)
    y = np.concatenate([g[2] for g in got])
    assert y.dtype == np.float32 and list(y) == [float(i % 2) for i in range(10)]


@pytest.mark.parametrize("use_augment", [False, True])
def test_shuffled_batches_keep_tiles_labels_and_dates_together(use_augment):
    tiles = make_tiles(10)
    got = list(batches(tiles, 3, np.random.default_rng(0), use_augment))
    a = np.concatenate([g[0] for g in got])
    b = np.concatenate([g[1] for g in got])
    y = np.concatenate([g[2] for g in got])
    assert a.dtype == np.uint8 and a.flags["C_CONTIGUOUS"]
    index = a[:, 0, 0, 0].astype(int)
    assert sorted(index) == list(range(10)), "every tile exactly once"
    assert list(index) != list(range(10)), "shuffled"
    assert np.array_equal(y, (index % 2).astype(np.float32)), "labels follow their tiles"
    assert np.array_equal(b.astype(int) - a.astype(int), np.ones(a.shape, dtype=int))
    transforms = set()
    for tile in a:
        assert (tile[0] == tile[0, 0, 0]).all()
        assert np.array_equal(tile[2], tile[1] + 100)
        transforms.add(which_transform(tile[1], coordinates().astype(np.uint8)))
    if use_augment:
        assert len(transforms) > 1
    else:
        assert transforms == {0}


def test_shuffle_is_deterministic_per_seed():
    tiles = make_tiles(10)

    def order(seed: int) -> list[int]:
        return [
            int(t)
            for a, _, _ in batches(tiles, 4, np.random.default_rng(seed), True)
            for t in a[:, 0, 0, 0]
        ]

    assert order(3) == order(3)
    assert order(3) != order(4)


def test_to_tensor_uint8_to_unit_range_channels_last():
    array = np.array([0, 1, 128, 255], dtype=np.uint8).reshape(1, 1, 2, 2).repeat(3, axis=1)
    tensor = to_tensor(array, torch.device("cpu"))
    assert tensor.dtype == torch.float32
    assert tensor.shape == (1, 3, 2, 2)
    assert tensor.is_contiguous(memory_format=torch.channels_last)
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0
    assert torch.allclose(tensor[0, 0].flatten(), torch.tensor([0, 1 / 255, 128 / 255, 1.0]))


def test_to_tensor_other_arrays_keep_values():
    labels = np.array([0.0, 1.0, 1.0], dtype=np.float64)
    tensor = to_tensor(labels, torch.device("cpu"))
    assert tensor.dtype == torch.float32
    assert tensor.tolist() == [0.0, 1.0, 1.0]
    flipped = np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::-1]  # a negative-stride view
    assert to_tensor(flipped, torch.device("cpu")).tolist() == [[2, 1, 0], [5, 4, 3]]
    ints = to_tensor(np.array([[3, 300]], dtype=np.int64), torch.device("cpu"))
    assert ints.dtype == torch.float32 and ints.tolist() == [[3.0, 300.0]]
