"""Fixtures of the core tests: a small saved model file, tiny synthetic dataset folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
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


TWO_PAIRS = ((0, 3), (1, 2))


def _family(
    root: Path, write_raster: Callable, scene: Callable, seed: int, pairs=TWO_PAIRS
) -> Path:
    """64 px GeoTIFF pairs; in each, the listed 32 px tiles (0-3) hold a new bright square."""
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True)
    for k, changed in enumerate(pairs):
        before = scene(64, 64, seed=seed + k)
        after, label = before.copy(), np.zeros((64, 64), dtype=np.uint8)
        for tile in changed:
            r, c = 32 * (tile // 2) + 6, 32 * (tile % 2) + 8
            after[:, r : r + 12, c : c + 14] = 250
            label[r : r + 12, c : c + 14] = 1
        write_raster(root / "A" / f"p{k}.tif", before)
        write_raster(root / "B" / f"p{k}.tif", after)
        write_raster(root / "label" / f"p{k}.tif", label)
    return root


@pytest.fixture(name="write_family", scope="session")
def write_family_fixture(write_raster, scene) -> Callable[..., Path]:
    """``write_family(root, seed, pairs)``: a dataset folder of 64 px pairs with known change."""

    def write(root: Path, seed: int, pairs=TWO_PAIRS) -> Path:
        return _family(root, write_raster, scene, seed, pairs)

    return write
