"""Bad model files and training faults: corrupt, truncated, of another backbone, bands or
version, not matching the raster; NaN loss after a good epoch, cancel at any moment then
``--resume``, and ``--device cuda`` without a GPU.

Model files hold random ResNet-18 networks (nothing downloaded); training uses tiny synthetic
32 px tiles on the CPU, a few optimizer steps per run.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.callbacks import Callbacks
from core.cli.main import main
from core.data.tilesets import TileSet
from core.errors import Canceled, KdmsiError
from core.io.windows import Window
from core.models.model_file import ModelInfo, load_model, save_model
from core.models.teacher_student import CamConfig, TeacherStudent
from core.train.pipeline import train_model
from core.train.trainer import TrainParams

CPU = torch.device("cpu")
PARAMS = TrainParams(backbone="resnet18", pretrained=False, epochs=2, batch_size=6, seed=0)


def cli(capsys, *args) -> tuple[int, list[dict]]:
    """Run ``kdmsi ARGS --jsonl``; return the exit status and the JSON events."""
    status = main([str(a) for a in args] + ["--jsonl"])
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def error_of(events: list[dict]) -> str:
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert len(errors) == 1, events
    return errors[0]


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    three = TeacherStudent(CamConfig(backbone="resnet18", pretrained=False))
    four = TeacherStudent(CamConfig(backbone="resnet18", pretrained=False, in_channels=4))
    return three, four


def write_model(path, net, **info) -> str:
    fields = {
        "backbone": "resnet18",
        "teacher_fusion": "minus",
        "student_fusion": "cat",
        "output_stride": 16,
        "bands": [1, 2, 3],
        "tile": 32,
    }
    states = {"student": net.student.state_dict(), "teacher": net.teacher.state_dict()}
    save_model(path, ModelInfo(**{**fields, **info}), states)
    return path


@pytest.fixture
def pair(tmp_path, write_raster, scene):
    a = write_raster(tmp_path / "a.tif", scene(64, 48, 3, seed=1))
    b = write_raster(tmp_path / "b.tif", scene(64, 48, 3, seed=2))
    return a, b


def detect(capsys, pair, model, out, *extra):
    argv = ["detect", "--model", model, "-a", pair[0], "-b", pair[1], "--out", out]
    return cli(capsys, *argv, "--scales", "1", "--device", "cpu", *extra)


def broken_model(kind: str, path, networks):
    good = write_model(path.with_name("good.pt"), networks[0])
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.touch()
    elif kind == "newer-version":
        payload = torch.load(good, weights_only=True)
        payload["format_version"] = 99
        torch.save(payload, path)
    elif kind == "other-backbone":  # ResNet-18 weights described as EfficientNet-Lite0
        write_model(path, networks[0], backbone="efficientnet-lite0")
    elif kind == "other-bands":  # 3-band weights described as 4 bands
        write_model(path, networks[0], bands=[1, 2, 3, 4])
    elif kind == "plain-torch-file":
        torch.save({"weights": torch.zeros(3)}, path)
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("truncated", "corrupt or truncated"),
        ("random", "corrupt or truncated"),
        ("empty", "corrupt or truncated"),
        ("newer-version", "update kdmsi"),
        ("other-backbone", "do not match its description"),
        ("other-bands", "do not match its description"),
        ("plain-torch-file", "not a kdmsi model"),
    ],
)
def test_bad_model_file_is_one_error_naming_it(tmp_path, pair, networks, capsys, kind, says):
    model = broken_model(kind, tmp_path / "model.pt", networks)
    out = tmp_path / "p.tif"
    status, events = detect(capsys, pair, model, out)
    message = error_of(events)
    assert status == 2 and says in message and str(model) in message
    assert not out.exists()


def test_model_of_four_bands_on_a_three_band_raster(tmp_path, pair, networks, capsys):
    model = write_model(tmp_path / "m4.pt", networks[1], bands=[1, 2, 3, 4])
    status, events = detect(capsys, pair, model, tmp_path / "p.tif")
    message = error_of(events)
    assert status == 2 and "has 3 band(s) but band 4 was asked for" in message
    assert str(pair[0]) in message


def test_bands_option_that_does_not_fit_the_model(tmp_path, pair, networks, capsys):
    model = write_model(tmp_path / "m3.pt", networks[0])
    status, events = detect(capsys, pair, model, tmp_path / "p.tif", "--bands", "1,2")
    message = error_of(events)
    assert status == 2 and "trained on 3 band(s)" in message and str(model) in message


def test_a_good_model_detects(tmp_path, pair, networks, capsys):
    """The control of the cases above: the same files with a matching model work."""
    model = write_model(tmp_path / "m3.pt", networks[0])
    status, events = detect(capsys, pair, model, tmp_path / "p.tif")
    assert status == 0, events
    assert (tmp_path / "p.tif").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu(tmp_path, pair, networks, capsys):
    model = write_model(tmp_path / "m3.pt", networks[0])
    argv = ["detect", "--model", model, "-a", pair[0], "-b", pair[1], "--out", tmp_path / "p.tif"]
    status, events = cli(capsys, *argv, "--device", "cuda")
    message = error_of(events)
    assert status == 2 and "--device cuda" in message and "--device auto or cpu" in message
    assert not (tmp_path / "p.tif").exists()


# --- training faults ------------------------------------------------------------------------


def synthetic_tiles(n: int = 16, size: int = 32) -> TileSet:
    """Half the tiles changed (a bright square in ``after``)."""
    rng = np.random.default_rng(0)
    before = rng.integers(40, 140, size=(n, 3, size, size)).astype(np.uint8)
    after = before.copy()
    labels = (np.arange(n) % 2).astype(np.int8)
    for i in np.flatnonzero(labels):
        after[i, :, 4:16, 4:16] = 250
    windows = [Window(0, 0, size, size)] * n
    valid = np.ones((n, size, size), dtype=bool)
    return TileSet(before, after, valid, labels, [f"t#{i}" for i in range(n)], windows)


class CancelAfter:
    """``is_canceled`` that turns True after ``checks`` calls."""

    def __init__(self, checks: int) -> None:
        self.checks, self.calls = checks, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.checks


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on two shared cores more threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "checks",
    [pytest.param(0, marks=pytest.mark.slow), 1, pytest.param(2, marks=pytest.mark.slow), 3],
)
def test_cancel_at_any_step_then_resume_finishes_the_run(tmp_path, checks):
    """Two epochs of two steps: cancel before step 1, 2, 3 or 4, then --resume."""
    tiles = synthetic_tiles()
    callbacks = Callbacks(is_canceled=CancelAfter(checks))
    with pytest.raises(Canceled, match=r"Resume the training \(--resume\) to finish it"):
        train_model(tiles, PARAMS, (1, 2, 3), tmp_path, CPU, callbacks, val_fraction=0.25)
    assert (tmp_path / "checkpoint.pt").is_file()
    assert not list(tmp_path.glob(".*partial*"))
    result = train_model(tiles, PARAMS, (1, 2, 3), tmp_path, CPU, Callbacks(), 0.25, resume=True)
    assert result.epochs == 2 and result.best_epoch in (1, 2)
    info, states = load_model(result.model_path)
    assert info.train_summary["selected_epoch"] == result.best_epoch
    assert all(torch.isfinite(v.float()).all() for v in states["student"].values())
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_nan_after_a_good_epoch_keeps_the_checkpoint_and_the_model(tmp_path):
    tiles = synthetic_tiles()
    one_epoch = replace(PARAMS, epochs=1)
    train_model(tiles, one_epoch, (1, 2, 3), tmp_path, CPU, Callbacks(), 0.25)
    model, checkpoint = tmp_path / "model.pt", tmp_path / "checkpoint.pt"
    kept = model.read_bytes(), checkpoint.read_bytes()
    exploding = replace(PARAMS, epochs=2, lr=1e12)
    with pytest.raises(KdmsiError) as err:
        train_model(tiles, exploding, (1, 2, 3), tmp_path, CPU, Callbacks(), 0.25, resume=True)
    message = str(err.value)
    assert "diverged" in message and "epoch 2" in message and "lower --lr" in message
    assert str(checkpoint) in message
    assert (model.read_bytes(), checkpoint.read_bytes()) == kept
    info, _ = load_model(model)
    assert info.train_summary["selected_epoch"] == 1
    assert not math.isnan(float((tmp_path / "log.csv").read_text().splitlines()[1].split(",")[1]))
