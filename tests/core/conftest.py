"""Fixtures of the core tests: a small saved model file (random ResNet-18 teacher and student)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from core.models.model_file import ModelInfo, save_model
from core.models.teacher_student import CamConfig, TeacherStudent


def make_info(**kw: Any) -> ModelInfo:
    """A ModelInfo of a ResNet-18 pair on 3 bands and 64 px tiles, with ``kw`` changed."""
    fields = {
        "backbone": "resnet18",
        "teacher_fusion": "minus",
        "student_fusion": "cat",
        "output_stride": 16,
        "bands": [3, 2, 1],
        "tile": 64,
    }
    return ModelInfo(**{**fields, **kw})


@pytest.fixture(scope="session")
def resnet_pair() -> TeacherStudent:
    torch.manual_seed(0)
    return TeacherStudent(CamConfig(backbone="resnet18", pretrained=False))


@pytest.fixture(scope="session")
def saved(resnet_pair, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    info = make_info(threshold=0.42, train_summary={"selected_epoch": 3, "tags": {"changed": 5}})
    states = {
        "student": resnet_pair.student.state_dict(),
        "teacher": resnet_pair.teacher.state_dict(),
    }
    save_model(path, info, states)
    return path, info, states


@pytest.fixture(name="info_for", scope="session")
def info_for_fixture() -> Callable[..., ModelInfo]:
    """:func:`make_info`, as a fixture."""
    return make_info
