"""Tests of the choice of the map ``detect --method auto`` runs (held-out tags only)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from core.callbacks import Callbacks
from core.data.tilesets import TileSet
from core.io.windows import Window
from core.models.model_file import load_model
from core.train.method_choice import (
    DEFAULT,
    MARGIN,
    chance_bound,
    choose_method,
    decide,
    leader_sentence,
    tags_needed,
    too_few_sentence,
    u_distribution,
)

CPU = torch.device("cpu")


def test_chance_bound_is_the_exact_mann_whitney_bound_for_few_tags():
    # one-sided 5 % critical values of the Mann-Whitney U (tables): 5 + 5 tags need U >= 21 of 25
    assert chance_bound(5, 5) == pytest.approx(21 / 25)
    assert chance_bound(3, 3) == 1.0  # a perfect ranking happens by chance 1 time in 20
    assert chance_bound(2, 2) is None  # ... and 1 time in 6 with 2 + 2: no AUC can show it
    assert chance_bound(0, 7) is None
    assert chance_bound(50, 50) < chance_bound(10, 10) < chance_bound(5, 5)


def test_large_counts_use_the_normal_approximation():
    assert chance_bound(300, 300) == pytest.approx(0.5 + 1.645 * math.sqrt(601 / (12 * 300**2)))


@pytest.mark.parametrize(("m", "n"), [(3, 4), (2, 5), (4, 4), (1, 6)])
def test_u_distribution_counts_every_ordering(m, n):
    counts = np.zeros(m * n + 1)
    for changed in itertools.combinations(range(m + n), m):  # positions of the changed tiles
        counts[sum(p - i for i, p in enumerate(changed))] += 1  # unchanged tiles ranked below
    np.testing.assert_allclose(u_distribution(m, n), counts)


def _auc(fused: float, kdmsi: float, cam: float, cva: float) -> dict[str, float]:
    return {"kdmsi-cva": fused, "kdmsi": kdmsi, "cam": cam, "cva": cva}


def test_the_default_is_kept_within_the_margin():
    assert DEFAULT == "kdmsi-cva"
    choice = decide(_auc(0.80, 0.80 + MARGIN / 2, 0.80 + MARGIN / 2, 0.70), 10, 10)
    assert choice.method == "kdmsi-cva"
    assert choice.reliable  # 0.80 > chance bound 0.73 of 10 + 10 tags
    assert choice.leader is None
    assert leader_sentence(choice) is None
    assert "held-out tags" in choice.reason and "AUC 0.80" in choice.reason


def test_a_candidate_ahead_by_the_margin_is_named_but_not_used():
    choice = decide(_auc(0.55, 0.50, 0.60, 0.90), 10, 10)
    assert choice.method == "kdmsi-cva"
    assert choice.leader == "cva"
    assert not choice.reliable  # the default's 0.55 is under the bound of 10 + 10 tags
    sentence = leader_sentence(choice)
    assert "AUC 0.90 against 0.55" in sentence and "--method cva" in sentence
    assert decide(_auc(0.50, 0.50, 0.80, 0.52), 10, 10).leader == "cam"
    assert decide(_auc(0.50, 0.80, 0.60, 0.52), 10, 10).leader == "kdmsi"


def test_a_lead_that_does_not_beat_chance_names_no_leader():
    assert chance_bound(5, 5) == pytest.approx(0.84)
    assert decide(_auc(0.60, 0.5, 0.5, 0.80), 5, 5).leader is None  # 0.80 < 0.84
    assert decide(_auc(0.60, 0.5, 0.5, 0.88), 5, 5).leader == "cva"
    assert decide(_auc(0.60, 0.5, 0.5, 1.0), 2, 2).leader is None  # no AUC can show it


def test_nan_counts_as_chance_and_weak_maps_are_unreliable():
    choice = decide(_auc(float("nan"), float("nan"), 0.31, 0.62), 6, 6)
    assert choice.method == "kdmsi-cva"
    assert not choice.reliable  # NaN counts as 0.5 < chance_bound(6, 6)
    assert choice.leader is None  # cva's 0.62 is ahead by the margin but not past chance
    assert chance_bound(6, 6) > 0.62
    assert math.isnan(choice.auc["kdmsi"])  # the measured values are kept as they were


def test_tags_needed_grows_as_the_best_map_nears_chance():
    weak = decide(_auc(0.55, 0.5, 0.5, 0.5), 5, 5)
    fair = decide(_auc(0.75, 0.5, 0.5, 0.5), 5, 5)
    assert tags_needed(weak, 48, 0.2) > tags_needed(fair, 48, 0.2) >= 48
    assert tags_needed(weak, 48, 0.2) <= 480


def _held_out(n: int = 8, size: int = 32) -> TileSet:
    """Changed tiles whose second date differs strongly, unchanged tiles identical on both."""
    rng = np.random.default_rng(0)
    labels = np.array([1, 0] * (n // 2), dtype=np.int8)
    before = rng.integers(0, 256, size=(n, 3, size, size)).astype(np.uint8)
    after = before.copy()
    after[labels == 1, :, 8:24, 8:24] = 255 - after[labels == 1, :, 8:24, 8:24]
    valid = np.ones((n, size, size), dtype=bool)
    names = [f"t#{i}" for i in range(n)]
    return TileSet(before, after, valid, labels, names, [Window(0, 0, size, size)] * n)


def test_choose_method_measures_every_candidate_and_stores_the_choice(saved, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(saved[0].read_bytes())
    held = _held_out()
    messages = []
    choice = choose_method(path, held, CPU, Callbacks(log=lambda lvl, m: messages.append(m)))
    assert set(choice.auc) == {"kdmsi-cva", "kdmsi", "cam", "cva"}
    assert choice.auc["cva"] == 1.0  # the colour difference alone tells these tiles apart
    assert choice.changed == choice.unchanged == 4
    info, states = load_model(path)
    assert info.method_choice["method"] == choice.method == info.auto_method
    assert info.method_choice["auc"] == choice.auc
    assert info.method_choice["chance_bound"] == pytest.approx(0.9375)  # U >= 15 of 16
    assert info.method_choice["leader"] == choice.leader
    assert 0.0 <= info.threshold_cam <= 1.0
    assert set(states) == {"student", "teacher"}  # the networks are kept as they were
    assert any("Map used by detect" in m for m in messages)
    assert choice.method == "kdmsi-cva"  # always the default, whatever the others score
    if choice.auc["kdmsi-cva"] <= 1.0 - MARGIN:  # CVA's perfect ranking is ahead by the margin
        assert choice.leader is not None and choice.auc[choice.leader] == 1.0
        assert any("To compare, run detect with --method" in m for m in messages)
    else:
        assert choice.leader is None


def test_inconsistent_tags_are_reported_with_how_many_more_to_tag(saved, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(saved[0].read_bytes())
    held = _held_out()
    flipped = TileSet(held.before, held.after, held.valid, 1 - held.labels, held.names,
                      held.windows)  # fmt: skip
    messages = []
    choice = choose_method(
        path, flipped, CPU, Callbacks(log=lambda lvl, m: messages.append((lvl, m))), tagged=40
    )
    assert choice.auc["cva"] == 0.0
    assert max(choice.auc.values()) < chance_bound(4, 4)  # the random networks do no better
    assert not choice.reliable
    assert not load_model(path)[0].reliable
    warnings = [m for lvl, m in messages if lvl == "warning"]
    assert any("too few or too inconsistent" in m and "more tiles" in m for m in warnings)


def test_no_held_out_tags_keep_the_default(saved, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(saved[0].read_bytes())
    messages = []
    assert choose_method(path, None, CPU, Callbacks(log=lambda lvl, m: messages.append(m))) is None
    info = load_model(path)[0]
    assert info.auto_method == "kdmsi-cva" and info.reliable
    assert "no tags were held out" in info.method_choice["reason"]
    assert any("could not be checked" in m for m in messages)


def test_the_warning_says_when_no_ranking_of_so_few_tags_can_show_anything():
    choice = decide(_auc(1.0, 1.0, 0.5, 0.5), 2, 2)
    assert not choice.reliable  # a perfect AUC on 2 + 2 tags proves nothing
    sentence = too_few_sentence(choice, 12, 0.2)
    assert "with 2 + 2 held-out tiles no ranking can show it" in sentence
    assert "Tag about" in sentence and "more tiles" in sentence
