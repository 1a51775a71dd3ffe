"""Tests of the chosen map at single scale, which suggest scores tiles with."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from core.data.magnitude import tile_magnitude
from core.data.tilesets import TileSet
from core.detect.fusion import fuse_tiles
from core.detect.predictors import make_predictor, predict_tiles
from core.detect.quick_map import quick_map, quick_scores
from core.io.windows import Window
from core.models.model_file import ModelInfo, load_model, save_model
from core.models.teacher_student import CamConfig, TeacherStudent

CPU = torch.device("cpu")
INFO = ModelInfo(
    "resnet18", "minus", "cat", 16, [1, 2, 3], 32, threshold=0.41, threshold_single=0.37,
    threshold_cam=0.3, threshold_fused=0.2, threshold_fused_single=0.25,
)  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    networks = TeacherStudent(CamConfig(backbone="resnet18", pretrained=False)).eval()
    path = tmp_path_factory.mktemp("quick") / "model.pt"
    states = {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()}
    save_model(path, INFO, states)
    return path


@pytest.fixture(scope="module")
def tiles() -> TileSet:
    rng = np.random.default_rng(1)
    before = rng.integers(0, 200, size=(4, 3, 32, 32)).astype(np.uint8)
    after = before.copy()
    after[:2, :, 8:20, 8:20] += 50
    valid = np.ones((4, 32, 32), dtype=bool)
    thresholds = np.full(4, 0.1, dtype=np.float32)
    names = [f"p#{i}" for i in range(4)]
    labels = np.array([1, 1, 0, 0], np.int8)
    return TileSet(before, after, valid, labels, names, [Window(0, 0, 32, 32)] * 4, thresholds)


@pytest.mark.parametrize(
    ("chosen", "method", "threshold"),
    [
        ("kdmsi", "kdmsi", 0.37),
        ("kdmsi-cva", "kdmsi-cva", 0.25),
        ("cam", "cam", 0.3),
        ("cva", "cva", 0.5),
        (None, "kdmsi", 0.37),  # a model file written before the map choice
    ],
)
def test_the_chosen_map_and_its_single_scale_threshold(model, tiles, chosen, method, threshold):
    info, states = load_model(model)
    info = replace(info, method_choice={"method": chosen} if chosen else {})
    picked = quick_map(info)
    assert (picked.method, picked.threshold) == (method, threshold)
    assert picked.needs_pair_threshold == (method in ("kdmsi-cva", "cva"))
    got = quick_scores(picked, info, states, model, tiles, CPU)
    network = "cam" if method == "cam" else "kdmsi"
    single = make_predictor(network, info, states, model, CPU, (1.0,), False)
    expected = {
        "cva": np.clip(tile_magnitude(tiles.before, tiles.after) / 0.2, 0, 1),
        "kdmsi-cva": fuse_tiles(
            predict_tiles(single, tiles, CPU), tiles, info.cva_window, info.affinity_rounds
        ),
    }.get(method)
    if expected is None:
        expected = predict_tiles(single, tiles, CPU)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_refined_model_is_scored_with_its_student(model):
    info, _ = load_model(model)
    refined = replace(info, refined_output_stride=16, method_choice={"method": "kdmsi"})
    assert quick_map(refined).method == "kdmsi"


@pytest.mark.parametrize("method", ["kdmsi", "kdmsi-cva"])
def test_a_flattened_student_is_scored_divided_by_its_field_once(model, tiles, method):
    info, states = load_model(model)
    plain = replace(info, method_choice={"method": method})
    field = [2.0] * 32**2  # single scale's field
    flat = replace(plain, flat_field=[4.0] * 32**2, flat_field_single=field)
    single = predict_tiles(
        make_predictor("kdmsi", info, states, model, CPU, (1.0,), False), tiles, CPU
    )
    got = {
        flattened: quick_scores(quick_map(f), f, states, model, tiles, CPU)
        for flattened, f in ((False, flat), (True, replace(flat, student_flattened=True)))
    }
    halved = np.clip(single / 2.0, 0, 1)
    if method == "kdmsi":
        np.testing.assert_allclose(got[False], single, atol=1e-6)  # thresholds of the raw map
        np.testing.assert_allclose(got[True], halved, atol=1e-6)
    else:  # the combination divides the raw student map itself, whatever the flag
        expected = fuse_tiles(halved, tiles, info.cva_window, info.affinity_rounds)
        for scored in got.values():
            np.testing.assert_allclose(scored, expected, atol=1e-6)
