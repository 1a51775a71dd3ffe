"""Fixtures of the plugin tests: real QGIS (pytest-qgis, offscreen) and the real worker."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Iterator

import pytest
from qgis.core import QgsApplication, QgsTask

from kdmsi_qgis.worker import WorkerNotFound, find_python, run_command

LEVIR_PAIR = "test_77_0512_0256.png"  # 8 changed and 8 unchanged tiles of 64 px


@pytest.fixture(scope="session")
def worker_python() -> str:
    """The worker's Python; skips when none is installed."""
    try:
        return find_python()[0]
    except WorkerNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mumbai_pair(shared_data: Path, require) -> dict[str, Path]:
    """OSCD Mumbai (EPSG:4326, 4 bands): before, after, label."""
    root = require(shared_data / "geo_oscd_mumbai")
    return {
        part: next(iter(sorted((root / folder).glob("*.tif"))))
        for part, folder in (("before", "A"), ("after", "B"), ("label", "label"))
    }


@pytest.fixture(scope="session")
def levir_pair(shared_data: Path, require) -> dict[str, Path]:
    """One 256x256 LEVIR-CD PNG pair (not georeferenced) and its label."""
    root = require(shared_data / "levir_cd_bit")
    return {
        part: require(root / folder / LEVIR_PAIR)
        for part, folder in (("before", "A"), ("after", "B"), ("label", "label"))
    }


@pytest.fixture(scope="session")
def mumbai_tags(mumbai_pair, worker_python, tmp_path_factory) -> Path:
    """An untagged tag layer of 128 px tiles over Mumbai, made by the real worker."""
    out = tmp_path_factory.mktemp("mumbai") / "tags.gpkg"
    outcome = run_command(
        "grid",
        {
            "before": mumbai_pair["before"],
            "after": mumbai_pair["after"],
            "bands": "3,2,1",
            "tile": 128,
            "out": out,
        },
    )
    assert outcome.ok, outcome.error
    return out


@pytest.fixture(scope="session")
def levir_tags(levir_pair, worker_python, tmp_path_factory) -> Path:
    """A tag layer of 64 px tiles over the LEVIR pair, tagged from its mask by the worker."""
    out = tmp_path_factory.mktemp("levir") / "tags.gpkg"
    outcome = run_command(
        "grid",
        {
            "before": levir_pair["before"],
            "after": levir_pair["after"],
            "tile": 64,
            "labels": levir_pair["label"],
            "out": out,
        },
    )
    assert outcome.ok, outcome.error
    return out


def _wait_for(task: QgsTask, timeout: float = 300.0) -> None:
    """Start a task in QGIS's task manager and process events until ``finished`` ran."""
    finished = []
    task.taskCompleted.connect(lambda: finished.append(True))
    task.taskTerminated.connect(lambda: finished.append(False))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + timeout
    while not finished:
        if time.monotonic() > deadline:
            task.cancel()
            pytest.fail(f"{task.description()} did not finish within {timeout} s")
        QgsApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QgsApplication.processEvents()


@pytest.fixture(scope="session")
def levir_model(levir_pair, levir_tags, tmp_path_factory) -> Path:
    """A one-epoch ResNet-18 model trained on the LEVIR pair by the real worker (CPU)."""
    run_dir = tmp_path_factory.mktemp("levir_run") / "run"
    outcome = run_command("train", _train_options(levir_pair, levir_tags, run_dir))
    assert outcome.ok, outcome.error + "\n".join(outcome.logs[-20:])
    return Path(outcome.outputs["model"])


def _train_options(pair: dict, tags: Path, out: Path, epochs: int = 1) -> dict:
    """Small, fast training options for the tests."""
    return {
        "before": pair["before"],
        "after": pair["after"],
        "tags": tags,
        "out": out,
        "epochs": epochs,
        "backbone": "resnet18",
        "batch_size": 4,
        "device": "cpu",
    }


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture():
    """Run a task in the task manager and wait until its ``finished`` ran."""
    return _wait_for


@pytest.fixture(name="train_options", scope="session")
def train_options_fixture():
    """Small, fast training options (ResNet-18, CPU, batch 4)."""
    return _train_options


def _finish_panel_task(dock, task, timeout: float = 300.0):
    """Process events until a task the panel started is done (its ``on_done`` ran)."""
    assert task is not None, dock.ui.log_view.toPlainText()
    deadline = time.monotonic() + timeout
    while dock.task is not None:
        assert time.monotonic() < deadline, f"{task.description()} did not finish"
        QgsApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QgsApplication.processEvents()
    return task


@pytest.fixture(name="finish_panel_task", scope="session")
def finish_panel_task_fixture():
    """``finish_panel_task(dock, task)``: wait, processing events, until the panel's task ends."""
    return _finish_panel_task


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_main_thread() -> Iterator[None]:
    """No cyclic garbage collection while a test runs; collect before and after, here.

    Python's cycle collector runs in whichever thread happens to allocate: inside a QgsTask's
    thread it can free Qt and QGIS objects (a dock, a layer, a lambda holding them) that belong
    to the main thread, which crashes QGIS's event loop at random. The plugin's tests wait for
    tasks while processing events, so garbage is collected only between tests, on this thread.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
