"""Tests of kdmsi_qgis.install_plan: what "Install dependencies" installs on each kind of machine.

Pure decisions (no install runs here): Linux, Windows and macOS, with and without an NVIDIA
driver (new and old), with numpy 1 and numpy 2 hosts, online and from a folder of wheels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kdmsi_qgis.install_plan import (
    Host,
    base_python_candidates,
    numpy_constraint,
    plan_install,
    version_tuple,
)


@pytest.mark.parametrize(
    ("host", "build", "index"),
    [
        (Host("Linux", "x86_64", "580.159.04"), "cuda-13.0", "/whl/cu130"),
        (Host("Linux", "x86_64", "570.86.10"), "cuda-12.8", "/whl/cu128"),
        (Host("Linux", "x86_64", "560.35.03"), "cuda-12.6", "/whl/cu126"),
        (Host("Linux", "x86_64", "535.183.01"), "cpu", "/whl/cpu"),
        (Host("Linux", "x86_64"), "cpu", "/whl/cpu"),
        (Host("Windows", "AMD64", "581.57"), "cuda-13.0", "/whl/cu130"),
        (Host("Windows", "AMD64", "572.16"), "cuda-12.8", "/whl/cu128"),
        (Host("Windows", "AMD64"), "cpu", "/whl/cpu"),
        (Host("Darwin", "arm64"), "mps", None),
        (Host("Darwin", "x86_64"), "cpu", None),
        (Host("Linux", "aarch64"), "cpu", None),
    ],
)
def test_the_torch_build_follows_the_machine(host, build, index):
    plan = plan_install(host)
    assert plan.build == build
    extra = dict(zip(plan.index_args[::2], plan.index_args[1::2])).get("--extra-index-url")
    assert (extra is None) if index is None else extra.endswith(index)
    assert "torch==2.13.0" in plan.constraints and "torch" in plan.requirements
    assert plan.reason.endswith(".") and "torch 2.13.0" in plan.reason


def test_an_old_driver_says_what_to_update():
    plan = plan_install(Host("Linux", "x86_64", "470.256.02"))
    assert "older than CUDA 12.6 needs (560.28.3)" in plan.reason
    assert "update the driver" in plan.reason


@pytest.mark.parametrize(
    ("numpy", "spec"),
    [("1.24.2", "numpy>=1.24.2,<2"), ("2.1.3", "numpy>=2.1.3,<3"), (None, "numpy<2")],
)
def test_the_hosts_numpy_is_kept_never_downgraded(numpy, spec):
    assert numpy_constraint(numpy) == spec
    plan = plan_install(Host("Linux", "x86_64", numpy_version=numpy))
    assert spec in plan.constraints
    if numpy:
        assert f"numpy stays at {numpy}" in plan.reason


def test_a_folder_of_wheels_installs_offline(tmp_path):
    plan = plan_install(Host("Windows", "AMD64", "575.64", "2.0.2", tmp_path))
    assert plan.index_args == ("--no-index", "--find-links", str(tmp_path))
    assert "offline" in plan.reason
    command = plan.pip_command("python.exe", tmp_path / "c.txt")
    assert command[:4] == ["python.exe", "-m", "pip", "install"]
    assert command[command.index("-c") + 1] == str(tmp_path / "c.txt")


def test_versions_parse_like_drivers_print_them():
    assert version_tuple("580.159.04") == (580, 159, 4)
    assert version_tuple("572.16") == (572, 16)
    assert version_tuple("2.1.0rc1") == (2, 1, 0)


@pytest.mark.parametrize(
    ("system", "prefix", "first"),
    [
        ("Windows", Path("C:/OSGeo4W/apps/Python312"),
         Path("C:/OSGeo4W/apps/Python312/python.exe")),
        ("Darwin", Path("/QGIS.app/Frameworks/Python.framework/Versions/3.12"),
         Path("/QGIS.app/Frameworks/Python.framework/Versions/3.12/bin/python3")),
        ("Linux", Path("/usr"), Path("/usr/bin/python3")),
    ],
)  # fmt: skip
def test_a_real_python_is_looked_for_under_qgiss_prefix(system, prefix, first):
    assert base_python_candidates(system, prefix, prefix)[0] == first


def test_the_plan_pins_what_the_project_tests_with():
    from kdmsi_qgis.install_plan import OTHER_PACKAGES, TORCH_VERSION

    root = Path(__file__).resolve().parents[2]
    pins = (root / "resources" / "constraints.txt").read_text()
    assert f"torch=={TORCH_VERSION}" in pins
    for package in OTHER_PACKAGES:
        if "==" in package:
            assert package in pins


@pytest.mark.parametrize(
    ("python", "allowed", "refused"),
    [("3.11", "1.24.2", "2.0.0"), ("3.13", "2.2.4", "3.0.0")],
)  # fmt: skip
def test_make_setups_numpy_pin_keeps_debians_numpy(python, allowed, refused):
    """Debian 12 (3.11) keeps numpy 1 for GDAL 3.6; Debian 13 (3.13) has only numpy 2 wheels."""
    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    lines = (root / "resources" / "constraints.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line.startswith("numpy")]
    environment = {"python_version": python, "python_full_version": f"{python}.0"}
    active = [pin for pin in pins if pin.marker is None or pin.marker.evaluate(environment)]
    assert len(active) == 1
    assert active[0].specifier.contains(allowed) and not active[0].specifier.contains(refused)


def test_install_commands_write_the_constraints_beside_the_environment(qgis_app, tmp_path):
    from kdmsi_qgis.environment import install_commands

    plan = plan_install(Host("Linux", "x86_64", numpy_version="1.24.2"))
    venv = tmp_path / "kdmsi" / "venv"
    commands = install_commands(plan, venv, base="/usr/bin/python3")
    assert commands[0] == ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)]
    constraints = venv.parent / "constraints.txt"
    assert constraints.read_text().split() == ["torch==2.13.0", "numpy>=1.24.2,<2"]
    python = str(venv / "bin" / "python")
    assert commands[-2] == plan.pip_command(python, constraints)
    assert commands[-2][-3:] == list(plan.requirements)
    assert commands[-1] == plan.pip_command(python, constraints, ("onnx", "onnxruntime"))
    assert commands[-1][-2:] == ["onnx", "onnxruntime"]  # the optional CPU engine, last
    offline = plan_install(Host("Linux", "x86_64", wheel_dir=tmp_path))
    assert not any("--upgrade" in c for c in install_commands(offline, venv, "/usr/bin/python3"))


def test_an_unreachable_index_falls_back_to_the_default_one_and_says_so(qgis_app):
    from kdmsi_qgis.environment import usable_plan

    lines: list[str] = []
    host = Host("Linux", "x86_64", numpy_version="1.24.2")
    plan = usable_plan(host, lines.append)
    if "cannot be reached" in " ".join(lines):  # this machine reaches only its package mirrors
        assert plan.index_args == ()
    else:
        assert plan.index_args[0] == "--extra-index-url"
    assert lines[-1].startswith("Installing torch 2.13.0 (cpu)")


@pytest.mark.slow
def test_install_dependencies_builds_a_worker_that_answers(qgis_app, tmp_path):
    """The real install (venv + pip, the local torch file here), then the worker's own probe."""
    import subprocess

    from kdmsi_qgis.environment import InstallTask

    venv = tmp_path / "kdmsi" / "venv"
    task = InstallTask(venv)
    lines: list[str] = []
    task.line.connect(lines.append)
    assert task.run(), task.error + "\n".join(lines[-30:])
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", "import torch, numpy; print(torch.__version__, numpy.__version__)"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("2.13.0"), done.stderr


def test_the_cpu_engine_is_optional_and_only_where_detection_runs_on_the_cpu():
    cpu = plan_install(Host("Linux", "x86_64", numpy_version="1.24.2"))
    cuda = plan_install(Host("Linux", "x86_64", nvidia_driver="570.86.10"))
    mac = plan_install(Host("Darwin", "arm64"))
    assert cpu.optional == mac.optional == ("onnx", "onnxruntime")
    assert cuda.build.startswith("cuda") and cuda.optional == ()
    assert "onnxruntime" not in cpu.requirements  # its failure must not fail the install


def test_a_failed_cpu_engine_install_leaves_a_working_install(qgis_app, tmp_path, monkeypatch):
    from kdmsi_qgis import environment

    plan = plan_install(Host("Linux", "x86_64", numpy_version="1.24.2"))
    monkeypatch.setattr(environment, "usable_plan", lambda host, log: plan)
    monkeypatch.setattr(environment, "detect_host", lambda wheel_dir: None)
    ok = [sys.executable, "-c", "print('installed')"]
    # a real pip that cannot find the package (an offline folder without it): status 1
    fails = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links",
             str(tmp_path), "kdmsi-no-such-package"]  # fmt: skip
    outcomes = {"first": [ok, ok, fails], "required fails": [ok, fails, ok]}
    for name, commands in outcomes.items():
        monkeypatch.setattr(environment, "install_commands", lambda p, v, c=commands: list(c))
        task = environment.InstallTask(venv=tmp_path / "venv")
        lines: list[str] = []
        task.line.connect(lines.append)
        result = task.run()
        if name == "first":
            assert result and task.error == ""
            assert "could not be installed; detection runs with torch" in lines[-1]
        else:
            assert not result and "failed (status 1)" in task.error
