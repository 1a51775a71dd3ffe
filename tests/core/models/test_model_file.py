"""Tests of core.models.model_file: the self-describing model file."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from core import __version__
from core.errors import KdmsiError
from core.models.model_file import FORMAT, FORMAT_VERSION, load_model, save_model


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


def test_save_overwrites_atomically(tmp_path, info_for):
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
def test_save_refuses_bad_state_names(tmp_path, states, info_for):
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
