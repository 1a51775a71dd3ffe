"""Model files written before ``core`` moved into subpackages still load and detect.

A model file is a plain dict (``torch.save``, read with ``weights_only=True``): no class of
``core`` is pickled in it, so moving modules cannot break it as long as the dict's keys and the
networks' parameter names and shapes stay the same. The names and shapes below were recorded from
the networks of main at 872e4c3 (before the move), as a SHA-256 of ``[[name, shape], ...]``; the
file is written here exactly as that main wrote it (format 1, the same ``info`` keys).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from core.detect.pair import detect_with_model
from core.detect.params import DetectParams
from core.models.model_file import (
    LEGACY_AFFINITY_ROUNDS,
    LEGACY_CVA_STANDARDISED,
    LEGACY_CVA_WINDOW,
    load_model,
)
from core.models.teacher_student import CamConfig, TeacherStudent

# (backbone, network) -> (number of tensors, SHA-256 of their names and shapes), from 872e4c3
OLD_LAYOUT = {
    ("efficientnet-lite0", "student"): (
        295,
        "7915093e42a847bdeab8426aad51c6ee6f511153b3e0776a25ba6876a54482e9",
    ),
    ("efficientnet-lite0", "teacher"): (
        295,
        "710503455c8cd5256b093332c4cea67fee0842e5f62cb690c09d1c0616158aef",
    ),
    ("resnet18", "student"): (
        121,
        "2cde5f4b15747d3e0bd6489399a19155d57c8903dbb7e43f22238eb9d91df3ac",
    ),
    ("resnet18", "teacher"): (
        121,
        "5b9279c00c983d93b18f41aa04f02c384604ed0e07932f752aef5aa1148aa224",
    ),
}
# asdict(ModelInfo(...)) as main at 872e4c3 wrote it
OLD_INFO = {
    "backbone": "efficientnet-lite0",
    "teacher_fusion": "minus",
    "student_fusion": "cat",
    "output_stride": 16,
    "bands": [1, 2, 3],
    "tile": 64,
    "threshold": 0.3,
    "threshold_single": 0.25,
    "threshold_rule": "Otsu on 4 held-out changed-tagged tiles",
    "refined_output_stride": 0,
    "train_summary": {"tags": {"changed": 10, "unchanged": 10}},
    "code_version": "0.1.0",
}


def layout_digest(state: dict[str, torch.Tensor]) -> tuple[int, str]:
    text = json.dumps([[name, list(t.shape)] for name, t in state.items()])
    return len(state), hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "resnet18"])
def test_the_networks_keep_the_parameter_names_and_shapes_of_old_files(backbone):
    pair = TeacherStudent(CamConfig(backbone=backbone, pretrained=False))
    for network in ("student", "teacher"):
        state = getattr(pair, network).state_dict()
        assert layout_digest(state) == OLD_LAYOUT[(backbone, network)], network


def test_an_old_model_file_loads_and_detects(tmp_path, write_raster, scene):
    torch.manual_seed(0)
    pair = TeacherStudent(CamConfig(backbone="efficientnet-lite0", pretrained=False)).eval()
    payload = {
        "format": "kdmsi-model",
        "format_version": 1,
        "info": OLD_INFO,
        "student_state": pair.student.state_dict(),
        "teacher_state": pair.teacher.state_dict(),
    }
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    info, _states = load_model(path)
    assert (info.threshold, info.threshold_single, info.tile) == (0.3, 0.25, 64)
    assert info.cva_window == LEGACY_CVA_WINDOW == 3  # what kdmsi-cva averaged over before
    assert info.affinity_rounds == LEGACY_AFFINITY_ROUNDS == 0  # and it refined nothing
    assert info.cva_standardised is LEGACY_CVA_STANDARDISED is False  # nor standardised
    before = write_raster(tmp_path / "a.tif", scene(96, 80, seed=3))
    after = write_raster(tmp_path / "b.tif", scene(96, 80, seed=4))
    out = tmp_path / "prob.tif"
    params = DetectParams(device="cpu", precision="fp32", scales=(1.0,), flip=False)
    threshold = detect_with_model(before, after, path, out, params)
    assert threshold == 0.25
    from osgeo import gdal

    prob = gdal.Open(str(out)).ReadAsArray()
    assert prob.shape == (80, 96) and np.isfinite(prob).all()
    assert 0.0 <= prob.min() <= prob.max() <= 1.0


def test_a_session_12_file_keeps_its_3_by_3_window_until_thresholds_are_chosen_again(tmp_path):
    # files of session 12 chose kdmsi-cva's thresholds on 3 x 3 averages and stored no window
    from dataclasses import asdict

    from core.models.model_file import CVA_WINDOW, ModelInfo, info_from_dict

    stored = asdict(ModelInfo("efficientnet-lite0", "minus", "cat", 16, [1, 2, 3], 64))
    del stored["cva_window"]
    assert info_from_dict(stored).cva_window == 3
    assert info_from_dict({**stored, "cva_window": 5}).cva_window == 5 == CVA_WINDOW


def test_files_before_session_20_keep_the_plain_difference_on_one_band_pairs():
    # their kdmsi-cva thresholds were chosen on the plain colour difference
    from dataclasses import asdict

    from core.models.model_file import ModelInfo, info_from_dict

    stored = asdict(ModelInfo("efficientnet-lite0", "minus", "cat", 16, [1], 64))
    assert stored["cva_standardised"] is True  # what this code writes
    del stored["cva_standardised"]
    assert info_from_dict(stored).cva_standardised is False


def test_files_before_session_21_have_no_flat_field_and_keep_the_undivided_map():
    from dataclasses import asdict

    from core.models.model_file import ModelInfo, info_from_dict

    info = ModelInfo("efficientnet-lite0", "minus", "cat", 16, [1, 2, 3], 2)
    info.flat_field, info.flat_field_single = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]
    np.testing.assert_array_equal(info.field_for((0.5, 1.0, 1.25, 2.0)), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(info.field_for((1.0,)), [[5, 6], [7, 8]])
    stored = asdict(info)
    del stored["flat_field"], stored["flat_field_single"]
    assert info_from_dict(stored).field_for((1.0,)) is None
    assert info_from_dict(stored).field_for((0.5, 1.0, 1.25, 2.0)) is None


def test_files_before_session_22_keep_the_student_map_undivided_even_with_a_field():
    from dataclasses import asdict

    from core.models.model_file import ModelInfo, info_from_dict

    info = ModelInfo("efficientnet-lite0", "minus", "cat", 16, [1, 2, 3], 2)
    info.flat_field, info.flat_field_single = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]
    stored = asdict(info)
    del stored["student_flattened"]  # session 21 wrote fields, and kdmsi thresholds undivided
    old = info_from_dict(stored)
    assert old.student_field((1.0,)) is None and old.field_for((1.0,)) is not None
    info.student_flattened = True
    np.testing.assert_array_equal(info.student_field((1.0,)), [[5, 6], [7, 8]])
    np.testing.assert_array_equal(info.student_field((0.5, 1.0, 1.25, 2.0)), [[1, 2], [3, 4]])
