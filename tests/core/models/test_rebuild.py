"""Tests of core.models.rebuild: the networks a model file describes, rebuilt strictly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from core.errors import KdmsiError
from core.models.cam import SiameseCAM
from core.models.model_file import load_model
from core.models.rebuild import build_network


def test_build_network_restores_the_weights(saved):
    path, _, _ = saved
    info, states = load_model(path)
    student = build_network(info, states, "student", path)
    teacher = build_network(info, states, "teacher", path)
    assert isinstance(student, SiameseCAM) and not student.training
    assert student.fusion == "cat" and teacher.fusion == "minus"
    for key, value in student.state_dict().items():
        assert torch.equal(value, states["student"][key]), key


def test_build_network_with_states_of_another_backbone(saved, info_for):
    path, _, states = saved
    wrong = info_for(backbone="efficientnet-lite0")
    with pytest.raises(KdmsiError, match="do not match") as err:
        build_network(wrong, states, "student", path)
    assert str(path) in str(err.value) and "efficientnet-lite0" in str(err.value)


def test_build_network_with_another_fusion(saved):
    path, info, states = saved
    # A minus-fusion head has half the input channels of the student's cat head.
    swapped = replace(info, student_fusion="minus")
    with pytest.raises(KdmsiError, match="student"):
        build_network(swapped, states, "student", path)


def test_build_network_missing_network(saved):
    path, info, states = saved
    with pytest.raises(KdmsiError, match="no refined network") as err:
        build_network(info, states, "refined", path)
    assert str(path) in str(err.value)
