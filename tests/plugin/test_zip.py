"""`make zip` builds a plugin zip that works on its own (core and resources inside)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from qgis.core import QgsApplication
app = QgsApplication([], False)
from kdmsi_qgis import paths
from kdmsi_qgis.worker import run_command
plugin = Path(sys.argv[1]) / "kdmsi_qgis"
assert paths.PLUGIN_DIR == plugin, paths.PLUGIN_DIR
assert paths.core_root() == plugin
assert paths.resources_dir() == plugin / "resources"
assert paths.metadata_path() == plugin / "metadata.txt"
outcome = run_command("grid", {"before": sys.argv[2], "after": sys.argv[3], "tile": 64,
                               "out": sys.argv[4]})
assert outcome.ok, outcome.error
print("OK")
"""


@pytest.fixture(scope="module")
def plugin_zip() -> Path:
    if not (ROOT / "Makefile").exists():
        pytest.skip("no Makefile beside the tests")
    subprocess.run(["make", "-s", "zip"], cwd=ROOT, check=True, capture_output=True)
    return ROOT / "dist" / "kdmsi_qgis.zip"


def test_zip_layout(plugin_zip):
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {n.split("/")[0] for n in names} == {"kdmsi_qgis"}
    for required in (
        "__init__.py",
        "metadata.txt",
        "LICENSE",
        "core/__main__.py",
        "core/cli/main.py",
        "core/defaults.json",
        "core/cli/protocol.json",
        "resources/icon.svg",
        "resources/tags.qml",
        "resources/constraints.txt",
    ):
        assert f"kdmsi_qgis/{required}" in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if n.startswith("kdmsi_qgis/core/perf/")], "dev-only code"
    assert plugin_zip.stat().st_size < 25e6


def test_zip_core_lists_no_developer_command(plugin_zip, tmp_path):
    """``kdmsi perf`` lives in core/perf, which the zip leaves out: the command is not offered.

    Debian's Python (no torch, no editable install of the repository) runs the zip's core.
    """
    zipfile.ZipFile(plugin_zip).extractall(tmp_path / "plugins")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "plugins" / "kdmsi_qgis")}
    done = subprocess.run(
        ["/usr/bin/python3", "-m", "core", "--help"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "perf" not in done.stdout


def test_zip_plugin_runs_its_own_core(plugin_zip, tmp_path, levir_pair, worker_python):
    zipfile.ZipFile(plugin_zip).extractall(tmp_path / "plugins")
    env = {**os.environ, "KDMSI_PYTHON": worker_python, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK,
            str(tmp_path / "plugins"),
            str(levir_pair["before"]),
            str(levir_pair["after"]),
            str(tmp_path / "tags.gpkg"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert "OK" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "tags.gpkg").exists()
