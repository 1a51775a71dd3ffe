"""Tests of the colour-affinity refinement of change maps (core.detect.affinity)."""

from __future__ import annotations

import numpy as np
import torch

from core.detect.affinity import affinity_weights, offsets, refine


def two_colour_pair(size: int = 64) -> torch.Tensor:
    """Both dates' bands ``[1, 6, size, size]``: a square changed colour, the rest did not."""
    rng = np.random.default_rng(0)
    before = 0.3 + 0.02 * rng.standard_normal((3, size, size))
    after = before.copy()
    after[:, 20:40, 20:40] = 0.9
    return torch.from_numpy(np.concatenate([before, after])[None]).float()


def test_weights_are_a_softmax_over_48_neighbours():
    weights = affinity_weights(two_colour_pair())
    assert len(offsets()) == 48 and weights.shape == (1, 48, 64, 64)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 64, 64))
    assert float(weights.min()) >= 0.0


def test_a_blob_spilling_over_the_changed_square_shrinks_to_it():
    features = two_colour_pair()
    prob = torch.zeros(1, 1, 64, 64)
    prob[..., 14:46, 14:46] = 1.0  # a stride-8 blob: 6 px too wide on every side
    refined = refine(prob, features, 10)
    inside, spill = refined[0, 0, 24:36, 24:36], refined[0, 0, 15:19, 15:45]
    assert float(inside.min()) > 0.9
    assert float(spill.mean()) < 0.5 * float(prob[0, 0, 15:19, 15:45].mean())


def test_zero_rounds_return_the_map_and_a_constant_map_stays_constant():
    features = two_colour_pair()
    prob = torch.rand(1, 1, 64, 64)
    assert refine(prob, features, 0) is prob
    constant = torch.full((2, 1, 32, 48), 0.4)
    refined = refine(constant, torch.rand(2, 2, 32, 48), 3)
    torch.testing.assert_close(refined, constant)
