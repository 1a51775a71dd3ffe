"""Tests of the flat field: the student's average map over tiles, and dividing a map by it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.detect.flat_field import (
    FIELD_DECIMALS,
    centre_to_ring,
    flat_field,
    flatten,
    flatten_maps,
    flattened,
)


def _bump(size: int = 16) -> np.ndarray:
    """A map high in the middle of the tile and low at its edges, as the student's average is."""
    axis = np.sin(np.linspace(0.0, np.pi, size)) + 0.5
    return np.outer(axis, axis).astype(np.float32)


def test_the_field_is_the_mean_of_valid_pixels_made_symmetric_with_mean_one():
    rng = np.random.default_rng(0)
    maps = _bump()[None] * rng.uniform(0.5, 1.5, (20, 16, 16)).astype(np.float32)
    valid = rng.random((20, 16, 16)) < 0.9
    maps[~valid] = 50.0  # pixels without data must not count
    field = flat_field(maps, valid)
    mean = np.where(valid, maps, 0).sum(0) / valid.sum(0)
    turns = [np.rot90(mean, k) for k in range(4)]
    expected = np.mean([*turns, *(t.T for t in turns)], axis=0)
    np.testing.assert_allclose(field, expected / expected.mean(), atol=10.0**-FIELD_DECIMALS)
    for k in range(4):  # the square's 8 symmetries leave it as it is
        np.testing.assert_array_equal(np.rot90(field, k), field)
        np.testing.assert_array_equal(np.rot90(field, k).T, field)
    assert field.mean() == pytest.approx(1.0, abs=1e-4)
    assert field.dtype == np.float32


def test_centre_to_ring_of_a_bump_and_of_a_flat_field():
    assert centre_to_ring(flat_field(_bump()[None], np.ones((1, 16, 16), bool))) > 1.5
    assert centre_to_ring(np.ones((16, 16), np.float32)) == pytest.approx(1.0)


def test_flatten_divides_the_map_by_the_field_and_clips_to_one():
    field = torch.from_numpy(flat_field(_bump()[None], np.ones((1, 16, 16), bool)))
    student = torch.from_numpy(_bump()[None, None] / 4)  # the bump and nothing else
    flat = flatten(student, field)
    assert flat.shape == (1, 1, 16, 16)
    assert float(flat.std()) < 1e-3 * float(flat.mean())  # flat: the bump is gone
    np.testing.assert_allclose(flatten(student * 20, field).numpy(), 1.0)  # clipped


def test_flatten_resizes_a_field_to_another_window_and_never_divides_by_zero():
    field = torch.ones(16, 16)
    field[0, 0] = 0.0  # the student never answered there
    student = torch.full((2, 1, 32, 24), 0.3)
    flat = flatten(student, field)
    assert flat.shape == (2, 1, 32, 24)
    assert torch.isfinite(flat).all() and float(flat.min()) >= 0.0 and float(flat.max()) <= 1.0
    np.testing.assert_allclose(flat[:, :, 8:, 8:].numpy(), 0.3, rtol=1e-6)  # field 1 there


def test_tile_maps_and_predictors_are_divided_by_a_field_and_left_alone_without_one():
    field = flat_field(_bump()[None], np.ones((1, 16, 16), bool))
    maps = np.stack([_bump(), 0.5 * _bump()]).astype(np.float32)
    expected = flatten(torch.from_numpy(maps)[:, None], torch.from_numpy(field))[:, 0].numpy()
    np.testing.assert_array_equal(flatten_maps(maps, field), expected)
    assert flatten_maps(maps, None) is maps

    def student(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(maps)[:, None] * (b - a).mean()

    a, b = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)
    np.testing.assert_allclose(flattened(student, field)(a, b)[:, 0].numpy(), expected, atol=1e-6)
    assert flattened(student, None) is student
