"""Tests of the student's map combined with change vector analysis (method ``kdmsi-cva``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.magnitude import PairCue, Standardisation, tile_magnitude
from core.data.tilesets import TileSet
from core.detect.affinity import refine
from core.detect.fusion import (
    cva_share,
    fuse,
    fuse_tiles,
    fused_predictor,
    pair_thresholds,
    smoothed,
    tiles_threshold,
)
from core.detect.predictors import predict_tiles

CPU = torch.device("cpu")


def _tiles(n: int = 6, size: int = 16, thresholds: np.ndarray | None = None) -> TileSet:
    """Tiles of two pairs (``p#``, ``q#``); odd tiles changed in their centre."""
    rng = np.random.default_rng(3)
    before = rng.integers(0, 120, size=(n, 3, size, size)).astype(np.uint8)
    after = before.copy()
    after[1::2, :, 4:12, 4:12] += 120
    labels = np.array([0, 1] * (n // 2), dtype=np.int8)
    names = [f"{'p' if i < n // 2 else 'q'}#{i}" for i in range(n)]
    valid = np.ones((n, size, size), dtype=bool)
    return TileSet(before, after, valid, labels, names, [None] * n, thresholds)


def toy_student(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A stand-in for the student: any map in [0, 1] that grows with the colour change."""
    return torch.sigmoid((b - a).mean(dim=1, keepdim=True) * 5)


def test_cva_share_puts_the_threshold_at_one_half_and_clips():
    a = torch.zeros(1, 2, 5, 5)
    b = torch.zeros(1, 2, 5, 5)
    b[0, 0], b[0, 1] = 0.3, 0.4  # magnitude 0.5 everywhere: the average changes nothing
    np.testing.assert_allclose(cva_share(a, b, 1.0, 5).numpy(), 0.25, rtol=1e-6)
    np.testing.assert_allclose(cva_share(a, b, 0.5, 5).numpy(), 0.5, rtol=1e-6)
    np.testing.assert_allclose(cva_share(a, 10 * b, 0.5, 5).numpy(), 1.0)  # clipped


def test_cva_share_averages_over_the_window():
    a = torch.zeros(1, 1, 7, 7)
    b = torch.zeros(1, 1, 7, 7)
    b[0, 0, 3, 3] = 0.9  # one speckle pixel
    b[0, 0, 0, 0] = 0.4  # one in a corner, whose 3 x 3 neighbourhood holds 4 pixels, 5 x 5 9
    three = smoothed((b - a).abs(), 3)[0, 0].numpy()
    assert three[3, 3] == pytest.approx(0.1) and three[2, 2] == pytest.approx(0.1)
    assert three[1, 1] == pytest.approx(0.4 / 9) and three[0, 0] == pytest.approx(0.4 / 4)
    assert three[5, 5] == 0.0
    five = smoothed((b - a).abs(), 5)[0, 0].numpy()
    assert five[3, 3] == pytest.approx(0.9 / 25) and five[5, 5] == pytest.approx(0.9 / 16)
    assert five[0, 0] == pytest.approx(0.4 / 9) and five[1, 1] == pytest.approx(1.3 / 16)
    np.testing.assert_allclose(cva_share(a, b, 1.0, 5)[0, 0].numpy(), five / 2, rtol=1e-6)


def test_fuse_is_the_geometric_mean_and_needs_both_cues():
    student = torch.tensor([0.0, 0.25, 1.0, 0.81])
    cva = torch.tensor([1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(fuse(student, cva).numpy(), [0.0, 0.5, 0.0, 0.9])


def test_fused_tiles_equal_the_fused_predictor_of_detect():
    tiles = _tiles(thresholds=np.full(6, 0.2, dtype=np.float32))

    direct = predict_tiles(fused_predictor(toy_student, 0.2, 5), tiles, CPU)
    combined = fuse_tiles(predict_tiles(toy_student, tiles, CPU), tiles, 5)
    np.testing.assert_allclose(combined, direct, atol=1e-6)
    assert combined[1::2].mean() > combined[0::2].mean()  # changed tiles stand out


def test_pair_thresholds_prefer_the_whole_pair_and_fall_back_per_pair():
    measured = np.array([0.1, 0.1, 0.1, 0.3, 0.3, 0.3], dtype=np.float32)
    np.testing.assert_array_equal(pair_thresholds(_tiles(thresholds=measured)), measured)
    tiles = _tiles()
    fallback = pair_thresholds(tiles)
    assert fallback[0] == fallback[1] == fallback[2]
    assert fallback[0] == pytest.approx(tiles_threshold(tiles.subset([0, 1, 2])))
    assert fallback[3] == pytest.approx(tiles_threshold(tiles.subset([3, 4, 5])))
    top = np.sqrt(3)
    magnitude = tile_magnitude(tiles.before, tiles.after)
    assert 0 < fallback[0] < top and magnitude.min() < fallback[0] < magnitude.max()


def test_tile_sets_carry_the_thresholds_through_subset_and_concat():
    measured = np.arange(6, dtype=np.float32) / 10
    tiles = _tiles(thresholds=measured)
    np.testing.assert_array_equal(tiles.subset([4, 1]).cva_threshold, measured[[4, 1]])
    pooled = TileSet.concat([tiles, tiles.subset([0])])
    np.testing.assert_array_equal(pooled.cva_threshold, [*measured, 0.0])
    assert TileSet.concat([tiles, _tiles()]).cva_threshold is None  # one unmeasured set: none
    standard = np.tile(np.arange(5, dtype=np.float32), (6, 1)) + np.arange(6)[:, None]
    tiles.cva_standard = standard
    np.testing.assert_array_equal(tiles.subset([4, 1]).cva_standard, standard[[4, 1]])
    np.testing.assert_array_equal(TileSet.concat([tiles, tiles]).cva_standard[6:], standard)
    assert TileSet.concat([tiles, _tiles()]).cva_standard is None


def one_band_tiles() -> tuple[TileSet, Standardisation]:
    """The tiles of :func:`_tiles` on their first band, with a standardisation of their pair."""
    tiles = _tiles(thresholds=np.full(6, 0.2, dtype=np.float32))
    tiles.before, tiles.after = tiles.before[:, :1], tiles.after[:, :1]
    standard = Standardisation(0.25, 0.1, 0.4, 0.2)
    cue = PairCue(0.2, standard, 1.5)
    tiles.cva_standard = np.tile([*standard.values, cue.standard_threshold], (6, 1))
    return tiles, standard


def test_standardised_tiles_equal_the_standardised_predictor_of_detect():
    tiles, standard = one_band_tiles()

    direct = predict_tiles(fused_predictor(toy_student, 1.5, 5, standard=standard), tiles, CPU)
    prob = predict_tiles(toy_student, tiles, CPU)
    combined = fuse_tiles(prob, tiles, 5, standardised=True)
    np.testing.assert_allclose(combined, direct, atol=1e-5)
    plain = fuse_tiles(prob, tiles, 5)  # an older model: the plain difference, threshold 0.2
    older = predict_tiles(fused_predictor(toy_student, 0.2, 5), tiles, CPU)
    np.testing.assert_allclose(plain, older)
    assert np.abs(combined - plain).max() > 0.05


@pytest.mark.parametrize("threshold", [0.05, 0.5])
def test_a_larger_pair_threshold_lowers_the_combined_map(threshold):
    tiles = _tiles(thresholds=np.full(6, threshold, dtype=np.float32))
    student = np.full((6, 16, 16), 0.64, dtype=np.float32)
    fused = fuse_tiles(student, tiles, 3)
    assert fused.max() <= 0.8 + 1e-6  # sqrt(0.64 x 1)
    square, inside = fused[1::2, 4:12, 4:12], fused[1::2, 5:11, 5:11]  # colour change 0.82 there
    if threshold == 0.05:  # far above the threshold: CVA's share saturates at 1
        np.testing.assert_allclose(square, 0.8, rtol=1e-5)
    else:  # sqrt(0.64 x 0.82 / 1.0) inside; the square's rim is averaged with unchanged pixels
        np.testing.assert_allclose(inside, np.sqrt(0.64 * 0.815 / 1.0), atol=0.01)
        assert square.min() < inside.min()


def test_tiles_are_refined_one_by_one_with_their_own_colours():
    tiles = _tiles(n=20, size=32, thresholds=np.full(20, 0.2, np.float32))
    student = np.random.default_rng(1).random((20, 32, 32)).astype(np.float32)
    plain = fuse_tiles(student, tiles, 5)
    refined = fuse_tiles(student, tiles, 5, rounds=10)  # 20 tiles: two batches of refinement
    colours = torch.from_numpy(np.concatenate([tiles.before, tiles.after], axis=1)).float() / 255
    for i in (0, 19):
        expected = refine(torch.from_numpy(plain[i : i + 1, None]), colours[i : i + 1], 10)
        np.testing.assert_allclose(refined[i], expected[0, 0].numpy(), atol=1e-6)
    assert np.abs(refined - plain).mean() > 1e-3


def test_fused_tiles_equal_the_fused_predictor_with_a_flat_field():
    tiles = _tiles(thresholds=np.full(6, 0.2, dtype=np.float32))
    field = np.linspace(0.5, 1.5, 16 * 16, dtype=np.float32).reshape(16, 16)

    direct = predict_tiles(fused_predictor(toy_student, 0.2, 5, field=field), tiles, CPU)
    maps = predict_tiles(toy_student, tiles, CPU)
    combined = fuse_tiles(maps, tiles, 5, field=field)
    np.testing.assert_allclose(combined, direct, atol=1e-6)
    plain = fuse_tiles(np.clip(maps / field, 0, 1).astype(np.float32), tiles, 5)
    np.testing.assert_allclose(combined, plain, atol=1e-6)  # the map divided, then combined
    assert not np.allclose(combined, fuse_tiles(maps, tiles, 5))
