"""Tests of refinement: pseudo labels from tags and MSI maps, tile prediction, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.callbacks import Callbacks
from core.data.tilesets import TileSet
from core.detect.predictors import predict_tiles
from core.errors import Canceled
from core.io.windows import Window
from core.models.refinement_net import ChangeSegNet
from core.train.refinement import RefineParams, pseudo_labels, train_refiner

CPU = torch.device("cpu")


def tileset(labels: list[int], size: int = 4, seed: int = 0) -> TileSet:
    rng = np.random.default_rng(seed)
    n = len(labels)
    before = rng.integers(0, 256, size=(n, 3, size, size)).astype(np.uint8)
    after = rng.integers(0, 256, size=(n, 3, size, size)).astype(np.uint8)
    return TileSet(
        before,
        after,
        np.ones((n, size, size), dtype=bool),
        np.asarray(labels, dtype=np.int8),
        [f"t#{i}" for i in range(n)],
        [Window(0, 0, size, size)] * n,
    )


def test_pseudo_labels_follow_the_rule():
    tiles = tileset([1, 0], size=2)
    tiles.valid[0, 1, 1] = False
    prob = np.array(
        [
            [[0.9, 0.5], [0.3, 0.7]],  # changed tile: >= 0.5 change, < 0.25 background
            [[0.9, 0.1], [0.6, 0.2]],  # unchanged tile: background everywhere
        ],
        dtype=np.float32,
    )
    prob[0, 1, 0] = 0.1
    target, weight = pseudo_labels(tiles, prob, RefineParams(high=0.5, low=0.25))
    assert target.dtype == np.float32 and weight.dtype == np.float32
    assert target[0].tolist() == [[1, 1], [0, 1]]
    assert weight[0].tolist() == [[1, 1], [1, 0]]  # (1, 1) is invalid
    assert target[1].tolist() == [[0, 0], [0, 0]]
    assert weight[1].tolist() == [[1, 1], [1, 1]]


def test_uncertain_pixels_of_changed_tiles_are_ignored():
    tiles = tileset([1], size=2)
    prob = np.array([[[0.3, 0.49], [0.25, 0.24]]], dtype=np.float32)
    target, weight = pseudo_labels(tiles, prob, RefineParams(high=0.5, low=0.25))
    assert target[0].tolist() == [[0, 0], [0, 0]]
    assert weight[0].tolist() == [[0, 0], [0, 1]]


def test_predict_tiles_runs_in_batches_in_order():
    tiles = tileset([0, 1, 0, 1, 1], size=6)
    calls = []

    def predictor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(len(a))
        return (b - a).abs().mean(1, keepdim=True)

    prob = predict_tiles(predictor, tiles, CPU, batch_size=2)
    assert calls == [2, 2, 1]
    expected = np.abs(tiles.after / 255.0 - tiles.before / 255.0).mean(axis=1)
    assert prob.shape == (5, 6, 6)
    np.testing.assert_allclose(prob, expected, atol=1e-6)


def test_predict_tiles_of_an_empty_set():
    prob = predict_tiles(lambda a, b: a[:, :1], tileset([], size=8), CPU)
    assert prob.shape == (0, 8, 8)


def test_train_refiner_tiny_run():
    tiles = tileset([1, 0, 1, 0], size=32, seed=3)
    prob = np.zeros((4, 32, 32), dtype=np.float32)
    prob[:, 8:20, 8:20] = 0.9
    logs, progress = [], []
    callbacks = Callbacks(
        progress=lambda f, m: progress.append(f), log=lambda level, m: logs.append(m)
    )
    params = RefineParams(epochs=1, batch_size=4)
    model = train_refiner(tiles, prob, "efficientnet-lite0", params, CPU, callbacks)
    assert isinstance(model, ChangeSegNet) and not model.training
    assert progress == [pytest.approx(1.0)]
    assert any("pseudo labels" in m for m in logs)
    assert any("refinement epoch 1" in m for m in logs)
    with torch.inference_mode():
        out = model.predict(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_train_refiner_cancel():
    tiles = tileset([1, 0], size=32)
    prob = np.zeros((2, 32, 32), dtype=np.float32)
    with pytest.raises(Canceled):
        train_refiner(
            tiles,
            prob,
            "efficientnet-lite0",
            RefineParams(epochs=1),
            CPU,
            Callbacks(is_canceled=lambda: True),
        )
