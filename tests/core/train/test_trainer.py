"""Tests of KD-MSI training on a tiny synthetic tile set (random resnet18, 32 px tiles, CPU)."""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.callbacks import Callbacks
from core.data.tilesets import TileSet
from core.data.trainsets import check_tags
from core.detect.flat_field import flat_field, flatten_maps
from core.detect.fusion import fuse_tiles
from core.detect.msi import MSI_SCALES
from core.detect.params import resolve_method
from core.detect.predictors import predict_tiles
from core.errors import Canceled, KdmsiError
from core.io.windows import Window
from core.models.model_file import ModelInfo, load_model
from core.models.rebuild import build_network
from core.runtime.precision import autocast_dtype
from core.train.pipeline import split_tags, student_predictors, train_model
from core.train.refinement import RefineParams
from core.train.threshold_choice import otsu_on_changed_tiles
from core.train.trainer import Trainer, TrainParams

CPU = torch.device("cpu")
# Few optimizer steps keep each training to seconds: 12 training tiles / batch 6 = 2 per epoch.
PARAMS = TrainParams(backbone="resnet18", pretrained=False, epochs=2, batch_size=6, seed=0)
BANDS = (1, 2, 3)


def synthetic_tiles(n: int = 16, size: int = 32, seed: int = 0) -> TileSet:
    """Half the tiles are changed: a bright square appears in ``after``."""
    rng = np.random.default_rng(seed)
    before = rng.integers(40, 140, size=(n, 3, size, size)).astype(np.uint8)
    after = np.clip(before.astype(int) + rng.integers(-8, 9, size=before.shape), 0, 255)
    after = after.astype(np.uint8)
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels):
        r, c = rng.integers(0, size - 12, size=2)
        after[i, :, r : r + 12, c : c + 12] = 250
    return TileSet(
        before,
        after,
        np.ones((n, size, size), dtype=bool),
        labels.astype(np.int8),
        [f"syn#{i}" for i in range(n)],
        [Window(0, 0, size, size)] * n,
    )


class Recorder:
    """Callbacks that remember what they were told."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.logs: list[tuple[str, str]] = []
        self.metrics: list[tuple[str, float, int]] = []
        self.progress: list[float] = []
        self.checks = 0
        self.cancel_after = cancel_after

    def is_canceled(self) -> bool:
        self.checks += 1
        return self.cancel_after is not None and self.checks > self.cancel_after

    @property
    def callbacks(self) -> Callbacks:
        return Callbacks(
            progress=lambda f, m: self.progress.append(f),
            log=lambda level, m: self.logs.append((level, m)),
            metric=lambda name, v, s: self.metrics.append((name, v, s)),
            is_canceled=self.is_canceled,
        )


def read_log(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch run shared by the tests that only read its outputs."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    recorder = Recorder()
    result = train_model(
        synthetic_tiles(), PARAMS, BANDS, run_dir, CPU, recorder.callbacks, val_fraction=0.25
    )
    return result, run_dir, recorder


def test_run_folder_outputs(trained):
    result, run_dir, _ = trained
    assert result.model_path == run_dir / "model.pt"
    assert result.run_dir == run_dir and result.epochs == 2
    for name in ("model.pt", "checkpoint.pt", "log.csv", "curves.png"):
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob(".*partial"))
    rows = read_log(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        assert set(row) >= {"teacher_bce", "distill", "saturated", "val_auc_student"}
        assert math.isfinite(float(row["teacher_bce"])) and float(row["teacher_bce"]) > 0
        assert 0.0 <= float(row["val_auc_student"]) <= 1.0
        assert 0.0 <= float(row["saturated"]) <= 1.0


def test_model_file_describes_the_training(trained):
    result, _, _ = trained
    info, states = load_model(result.model_path)
    assert info.backbone == "resnet18"
    assert info.bands == [1, 2, 3] and info.in_channels == 3
    assert info.tile == 32
    # thresholds chosen from tags alone (Otsu on held-out changed-tagged tiles)
    assert 0.0 < info.threshold < 1.0 and 0.0 < info.threshold_single < 1.0
    assert info.threshold_rule.startswith("Otsu on 2 changed-tagged tiles")
    assert info.train_summary["selected_epoch"] == result.best_epoch
    assert result.best_epoch in (1, 2)
    assert info.train_summary["tags"] == {"changed": 8, "unchanged": 8}
    assert info.train_summary["held_out"] == {"changed": 2, "unchanged": 2}
    assert info.train_summary["params"]["epochs"] == 2
    assert set(states) == {"student", "teacher"}
    best = read_log(result.run_dir)[result.best_epoch - 1]
    assert float(best["val_auc_student"]) == pytest.approx(result.best_auc)
    assert info.train_summary["val_auc_student"] == pytest.approx(result.best_auc)
    assert max(float(r["val_auc_student"]) for r in read_log(result.run_dir)) == pytest.approx(
        result.best_auc
    )
    student = build_network(info, states, "student", result.model_path)
    with torch.inference_mode():
        cam = student(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert cam.shape == (1, 1, 2, 2) and torch.isfinite(cam).all()


def test_callbacks_receive_progress_metrics_and_logs(trained):
    _, _, recorder = trained
    steps = [s for name, _, s in recorder.metrics if name == "loss"]
    assert steps == [1, 2, 3, 4]  # 12 training tiles / batch 6 = 2 steps x 2 epochs
    assert {name for name, _, _ in recorder.metrics} >= {"val_auc_student", "teacher_bce"}
    assert recorder.progress[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(recorder.progress, recorder.progress[1:]))
    messages = " ".join(m for _, m in recorder.logs)
    assert "12 tiles" in messages and "4 held out" in messages
    assert "Epoch 2 of 2: loss" in messages and "outscores an unchanged one" in messages


def test_resume_continues_to_more_epochs(trained, tmp_path):
    _, run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = read_log(copy)
    recorder = Recorder()
    result = train_model(
        synthetic_tiles(),
        replace(PARAMS, epochs=3),
        BANDS,
        copy,
        CPU,
        recorder.callbacks,
        val_fraction=0.25,
        resume=True,
    )
    rows = read_log(copy)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[:2] == before, "the resumed run keeps the first epochs' rows"
    assert result.epochs == 3
    assert any("Resumed" in m and "after epoch 2" in m for _, m in recorder.logs)
    # Only epoch 3 was trained: 2 optimizer steps, numbered after the first 4.
    assert [s for name, _, s in recorder.metrics if name == "loss"] == [5, 6]
    saved = torch.load(copy / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["epoch"] == 3 and saved["state"]["iteration"] == 6


def test_a_refined_model_reports_the_map_detect_draws(tmp_path):
    refine = RefineParams(epochs=1, batch_size=4)
    result = train_model(
        synthetic_tiles(), PARAMS, BANDS, tmp_path, CPU, Callbacks(), 0.25, refine_params=refine
    )
    assert load_model(result.model_path)[0].refined_output_stride
    assert result.method == resolve_method("auto", result.model_path) == "kdmsi-refined"


def test_affinity_rounds_are_stored_and_used_for_the_combined_threshold(tmp_path):
    """``TrainParams.affinity_rounds`` (``kdmsi train --affinity-rounds``) reaches the model file,
    and the combined map's threshold is chosen on maps refined that many times."""
    tiles, params = synthetic_tiles(), replace(PARAMS, affinity_rounds=3)
    result = train_model(tiles, params, BANDS, tmp_path, CPU, Callbacks(), 0.25)
    info, states = load_model(result.model_path)
    assert info.affinity_rounds == 3 and info.train_summary["params"]["affinity_rounds"] == 3
    _, held_out = split_tags(tiles, 0.25, PARAMS.seed, Callbacks())
    dtype = autocast_dtype(params.precision, CPU)  # the precision training chose them in
    multi_scale, _ = student_predictors(info, states, result.model_path, CPU, dtype)
    prob = predict_tiles(multi_scale, held_out, CPU)
    field = info.field_for(MSI_SCALES)
    for rounds, expected in ((3, True), (0, False)):
        fused = fuse_tiles(prob, held_out, info.cva_window, rounds, field=field)
        choice = otsu_on_changed_tiles(held_out, fused)
        assert (choice.value == pytest.approx(info.threshold_fused, abs=1e-6)) is expected


def test_the_flat_fields_of_all_tagged_tiles_are_stored_and_divide_the_maps(tmp_path):
    """The student's average map over every tagged tile's images (held-out ones too), at MSI
    and at single scale; the thresholds of the combined map and of the student's own are chosen
    on maps divided by them."""
    tiles = synthetic_tiles()
    result = train_model(tiles, PARAMS, BANDS, tmp_path, CPU, Callbacks(), 0.25)
    info, states = load_model(result.model_path)
    dtype = autocast_dtype(PARAMS.precision, CPU)
    predictors = student_predictors(info, states, result.model_path, CPU, dtype)
    _, held_out = split_tags(tiles, 0.25, PARAMS.seed, Callbacks())
    assert info.student_flattened
    thresholds = ((info.threshold_fused, info.threshold), (info.threshold_fused_single,
                  info.threshold_single))  # fmt: skip
    for predictor, scales, (fused_cut, student_cut) in zip(
        predictors, (MSI_SCALES, (1.0,)), thresholds
    ):
        field = info.field_for(scales)
        assert field.shape == (tiles.tile_size, tiles.tile_size)
        np.testing.assert_array_equal(info.student_field(scales), field)
        expected = flat_field(predict_tiles(predictor, tiles, CPU), tiles.valid)
        np.testing.assert_allclose(field, expected, atol=2e-4)
        prob = predict_tiles(predictor, held_out, CPU)
        fused = fuse_tiles(prob, held_out, info.cva_window, standardised=True, field=field)
        assert otsu_on_changed_tiles(held_out, fused).value == pytest.approx(fused_cut, abs=1e-6)
        student = otsu_on_changed_tiles(held_out, flatten_maps(prob, field)).value
        assert student == pytest.approx(student_cut, abs=1e-6)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(KdmsiError, match="No checkpoint") as err:
        train_model(synthetic_tiles(), PARAMS, BANDS, tmp_path, CPU, Callbacks(), resume=True)
    assert str(tmp_path / "checkpoint.pt") in str(err.value)


def test_resume_from_a_damaged_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KdmsiError, match="cannot be resumed") as err:
        train_model(synthetic_tiles(), PARAMS, BANDS, tmp_path, CPU, Callbacks(), resume=True)
    assert str(tmp_path / "checkpoint.pt") in str(err.value)


def test_cancel_in_second_epoch_keeps_checkpoint_and_model(trained, tmp_path):
    recorder = Recorder(cancel_after=3)  # 2 steps of epoch 1, then one step of epoch 2
    with pytest.raises(Canceled) as err:
        train_model(
            synthetic_tiles(), PARAMS, BANDS, tmp_path, CPU, recorder.callbacks, val_fraction=0.25
        )
    message = str(err.value)
    checkpoint = tmp_path / "checkpoint.pt"
    assert str(checkpoint) in message and "--resume" in message
    assert str(tmp_path / "model.pt") in message and "epoch 1" in message
    assert checkpoint.is_file() and (tmp_path / "model.pt").is_file()
    assert "unfinished" in message  # the model file says so too, and detect warns about it
    assert not load_model(tmp_path / "model.pt")[0].finished
    assert load_model(trained[0].model_path)[0].finished
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["state"]["epoch"] == 1
    assert len(saved["state"]["rows"]) == 1
    # Training is deterministic per seed: epoch 1 matches the uncanceled run's.
    first = read_log(trained[1])[0]
    assert saved["state"]["rows"][0]["teacher_bce"] == pytest.approx(
        float(first["teacher_bce"]), rel=1e-4
    )


def test_cancel_before_the_first_step_keeps_a_checkpoint_only(tmp_path):
    recorder = Recorder(cancel_after=0)
    with pytest.raises(Canceled) as err:
        train_model(
            synthetic_tiles(), PARAMS, BANDS, tmp_path, CPU, recorder.callbacks, val_fraction=0.25
        )
    assert str(tmp_path / "checkpoint.pt") in str(err.value)
    assert "model" not in str(err.value).replace(str(tmp_path), "")
    assert (tmp_path / "checkpoint.pt").is_file()
    assert not (tmp_path / "model.pt").exists()
    saved = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["epoch"] == 0 and saved["state"]["rows"] == []


def test_without_held_out_tags_the_last_epoch_is_kept(tmp_path):
    recorder = Recorder()
    params = replace(PARAMS, batch_size=8)  # one step per epoch
    result = train_model(
        synthetic_tiles(8), params, BANDS, tmp_path, CPU, recorder.callbacks, val_fraction=0.0
    )
    assert result.best_epoch == 2
    rows = read_log(tmp_path)
    assert all(math.isnan(float(r["val_auc_student"])) for r in rows)
    info, _ = load_model(result.model_path)
    assert info.train_summary["selected_epoch"] == 2
    assert info.train_summary["held_out"] == {}
    assert any(level == "warning" and "Too few tags" in m for level, m in recorder.logs)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A run whose loss becomes NaN in its first epoch (lr 1e12: NaN at the second step)."""
    run_dir = tmp_path_factory.mktemp("diverged")
    params = replace(PARAMS, lr=1e12, epochs=1, batch_size=4)
    with pytest.raises(KdmsiError) as err:
        train_model(synthetic_tiles(8), params, BANDS, run_dir, CPU, Callbacks(), 0.0)
    return str(err.value), run_dir


def test_divergence_is_a_clear_error(diverged):
    message, run_dir = diverged
    assert "diverged" in message and "nan" in message and "epoch 1" in message
    assert "lower --lr" in message
    assert not (run_dir / "model.pt").exists()


def test_divergence_message_names_only_a_checkpoint_that_exists(diverged):
    message, run_dir = diverged
    checkpoint = run_dir / "checkpoint.pt"
    assert str(checkpoint) not in message or checkpoint.is_file()


def test_trainer_checkpoint_is_written_atomically(tmp_path):
    tiles = synthetic_tiles(8)
    trainer = Trainer(
        tiles, None, replace(PARAMS, epochs=1), _info(tiles), tmp_path, CPU, Callbacks()
    )
    trainer.save_checkpoint()
    assert (tmp_path / "checkpoint.pt").is_file()
    assert not (tmp_path / ".checkpoint.pt.partial").exists()
    saved = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert set(saved) == {"model", "optimizer", "state", "params"}
    assert saved["params"]["backbone"] == "resnet18"


def _info(tiles: TileSet) -> ModelInfo:
    return ModelInfo("resnet18", "minus", "cat", 16, list(BANDS), tiles.tile_size)


# --- tag checks and the held-out split ----------------------------------------------------


@pytest.mark.parametrize("label", [0, 1])
def test_check_tags_needs_both_classes(label):
    tiles = synthetic_tiles(6)
    tiles.labels[:] = label
    with pytest.raises(KdmsiError, match="tag at least one tile of each class") as err:
        check_tags(tiles, "my_tags.gpkg")
    assert "my_tags.gpkg" in str(err.value)
    check_tags(synthetic_tiles(2), "ok")  # one of each: no error


def test_split_tags_holds_out_per_class():
    recorder = Recorder()
    train, held = split_tags(synthetic_tiles(20), 0.2, 0, recorder.callbacks)
    assert held is not None
    assert held.counts == {"changed": 2, "unchanged": 2}
    assert train.counts == {"changed": 8, "unchanged": 8}
    assert not set(train.names) & set(held.names)
    assert any(level == "info" and "4 held out" in m for level, m in recorder.logs)


@pytest.mark.parametrize(("n", "fraction"), [(6, 0.2), (40, 0.0), (8, 0.25)])
def test_split_tags_with_too_few_tags_trains_on_all(n, fraction):
    recorder = Recorder()
    tiles = synthetic_tiles(n)
    train, held = split_tags(tiles, fraction, 0, recorder.callbacks)
    assert held is None  # (8, 0.25) would hold out one tag per class: fewer than 2
    assert train is tiles
    assert [level for level, _ in recorder.logs] == ["warning"]
    assert "Too few tags" in recorder.logs[0][1]


def test_min_steps_lengthens_short_epochs_only():
    params = replace(PARAMS, epochs=3, batch_size=8, min_steps=20)
    assert params.lengthened(40).epochs == 4  # 5 steps an epoch: 4 epochs reach 20
    assert params.lengthened(41).epochs == 4  # 6 steps: ceil(20 / 6)
    assert params.lengthened(400).epochs == 3  # already 150 steps: never fewer epochs
    assert replace(params, min_steps=0).lengthened(8).epochs == 3


def test_training_runs_the_lengthened_epochs_and_says_so(tmp_path):
    recorder = Recorder()
    params = replace(PARAMS, epochs=1, min_steps=4)  # 12 tiles / 6 = 2 steps: 2 epochs
    train_model(synthetic_tiles(), params, BANDS, tmp_path, CPU, recorder.callbacks, 0.25)
    assert [row["epoch"] for row in read_log(tmp_path)] == ["1", "2"]
    assert load_model(tmp_path / "model.pt")[0].train_summary["params"]["epochs"] == 2
    assert any("Training 2 epochs" in message for _, message in recorder.logs)
