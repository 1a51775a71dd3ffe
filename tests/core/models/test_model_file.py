"""Tests of the self-describing model file and of rebuilding networks from it."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from core import __version__
from core.detect.predictors import build_network, make_predictor
from core.errors import KdmsiError
from core.models.cam import CamConfig, SiameseCAM, TeacherStudent
from core.models.model_file import FORMAT, FORMAT_VERSION, ModelInfo, load_model, save_model


def info_for(**kw) -> ModelInfo:
    fields = {
        "backbone": "resnet18",
        "teacher_fusion": "minus",
        "student_fusion": "cat",
        "output_stride": 16,
        "bands": [3, 2, 1],
        "tile": 64,
    }
    return ModelInfo(**{**fields, **kw})


@pytest.fixture(scope="module")
def resnet_pair() -> TeacherStudent:
    torch.manual_seed(0)
    return TeacherStudent(CamConfig(backbone="resnet18", pretrained=False))


@pytest.fixture(scope="module")
def saved(resnet_pair, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    info = info_for(threshold=0.42, train_summary={"selected_epoch": 3, "tags": {"changed": 5}})
    states = {
        "student": resnet_pair.student.state_dict(),
        "teacher": resnet_pair.teacher.state_dict(),
    }
    save_model(path, info, states)
    return path, info, states


def test_round_trip(saved):
    path, info, states = saved
    loaded_info, loaded = load_model(path)
    assert asdict(loaded_info) == asdict(info)
    assert loaded_info.in_channels == 3
    assert loaded_info.code_version == __version__
    assert set(loaded) == {"student", "teacher"}
    for name in ("student", "teacher"):
        assert list(loaded[name]) == list(states[name])
        for key, value in states[name].items():
            assert torch.equal(loaded[name][key], value), key


def test_file_is_tagged_and_no_partial_left(saved):
    path, _, _ = saved
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    assert not path.with_name(f".{path.name}.partial").exists()


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "m.pt"
    state = {"student": {"w": torch.ones(2)}}
    save_model(path, info_for(tile=32), state)
    save_model(path, info_for(tile=48), {"student": {"w": torch.zeros(2)}})
    info, states = load_model(path)
    assert info.tile == 48 and torch.equal(states["student"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize(
    "states",
    [{"teacher": {"w": torch.ones(1)}}, {"student": {"w": torch.ones(1)}, "other": {}}],
)
def test_save_refuses_bad_state_names(tmp_path, states):
    with pytest.raises(ValueError, match="student"):
        save_model(tmp_path / "m.pt", info_for(), states)
    assert not (tmp_path / "m.pt").exists()


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(KdmsiError, match="does not exist") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(KdmsiError) as err:
        load_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_truncated_file(saved, tmp_path):
    path = tmp_path / "truncated.pt"
    data = saved[0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KdmsiError, match="corrupt or truncated") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(256)) * 37)
    with pytest.raises(KdmsiError) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(KdmsiError) as err:
        load_model(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"weights": torch.ones(3)},
        {"format": "something-else", "format_version": 1},
        [torch.ones(1), torch.zeros(1)],
        torch.ones(4),
    ],
    ids=["dict", "other-format", "list", "tensor"],
)
def test_torch_file_that_is_not_a_kdmsi_model(tmp_path, payload):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(KdmsiError, match="not a kdmsi model") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_newer_format_version(saved, tmp_path):
    payload = torch.load(saved[0], map_location="cpu", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.pt"
    torch.save(payload, path)
    with pytest.raises(KdmsiError, match="newer") as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert f"format {FORMAT_VERSION + 1}" in str(err.value)


def test_unreadable_description(saved, tmp_path):
    payload = torch.load(saved[0], map_location="cpu", weights_only=True)
    payload["info"] = {**payload["info"], "unknown_field": 1}
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(KdmsiError, match="description") as err:
        load_model(path)
    assert str(path) in str(err.value)


# --- rebuilding networks (core/detect/predictors.py) ---------------------------------------------


def test_build_network_restores_the_weights(saved):
    path, _, _ = saved
    info, states = load_model(path)
    student = build_network(info, states, "student", path)
    teacher = build_network(info, states, "teacher", path)
    assert isinstance(student, SiameseCAM) and not student.training
    assert student.fusion == "cat" and teacher.fusion == "minus"
    for key, value in student.state_dict().items():
        assert torch.equal(value, states["student"][key]), key


def test_build_network_with_states_of_another_backbone(saved, tmp_path):
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


def test_make_predictor_unknown_method(saved):
    path, info, states = saved
    with pytest.raises(KdmsiError, match="Unknown method"):
        make_predictor("magic", info, states, path, torch.device("cpu"))


@pytest.mark.parametrize("method", ["kdmsi", "cam"])
def test_make_predictor_outputs_probabilities(saved, method):
    path, info, states = saved
    predictor = make_predictor(method, info, states, path, torch.device("cpu"), scales=(1.0,))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 48, 40, generator=gen), torch.rand(2, 3, 48, 40, generator=gen)
    with torch.inference_mode():
        prob = predictor(a, b)
    assert prob.shape == (2, 1, 48, 40)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0
