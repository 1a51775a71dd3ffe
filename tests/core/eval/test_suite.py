"""Tests of the transfer suite (core.eval.suite, core.eval.curves) and of tag budgets.

Two tiny synthetic families (64 px pairs, 32 px tiles, one epoch of a random-weight network) go
through the real ``kdmsi benchmark --suite`` command: the point is the bookkeeping (families,
budgets, seeds, tables, curves), not the accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.eval.benchmark_data import BenchmarkData, budget_subset
from core.eval.suite import MEAN_ROW, SPREAD_ROW, load_families, markdown_tables, seed_means

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Tiles:
    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels


def fake_data(labels: list[int]) -> BenchmarkData:
    n = len(labels)
    tiles = Tiles(np.array(labels))
    return BenchmarkData(tiles, np.zeros(n), np.arange(n - 4), np.arange(n - 4, n))


def test_a_budget_draws_that_many_training_tiles_of_both_classes():
    data = fake_data([1] * 30 + [0] * 70 + [1, 0, 1, 0])
    small = budget_subset(data, 10, seed=0)
    labels = data.tiles.labels[small.train]
    assert len(small.train) == 10 and set(small.train) <= set(data.train)
    assert labels.sum() == 3  # 30 % changed among the training tiles
    assert np.array_equal(small.test, data.test)
    assert np.array_equal(budget_subset(data, 10, seed=0).train, small.train)  # seeded
    assert not np.array_equal(budget_subset(data, 10, seed=1).train, small.train)


def test_a_rare_class_keeps_one_tile_and_the_budget_holds():
    data = fake_data([1] + [0] * 99 + [0, 0, 0, 0])
    small = budget_subset(data, 5, seed=0)
    assert len(small.train) == 5 and data.tiles.labels[small.train].sum() == 1


@pytest.mark.parametrize("budget", [0, -1, 96, 500])
def test_no_budget_or_a_large_one_keeps_every_training_tile(budget):
    data = fake_data([1, 0] * 50)
    assert budget_subset(data, budget, seed=0) is data


@pytest.fixture(scope="module")
def suite(tmp_path_factory, write_family):
    data = tmp_path_factory.mktemp("suite_data")
    three_pairs = ((0, 3), (1, 2), (0, 1))
    write_family(data / "one", 10, three_pairs)
    write_family(data / "two", 20, three_pairs)
    path = data / "suite.json"
    families = [
        {"name": "One", "folders": ["one"], "tile": 32},
        {"name": "Two", "folders": ["two"], "tile": 32},
        {"name": "Absent", "folders": ["nowhere"]},
        {"name": "Partial", "folders": ["one"], "skip": "partial labels are not scored yet"},
    ]
    path.write_text(json.dumps({"families": families}))
    return path, data


def test_families_left_out_say_why(suite):
    path, data = suite
    logs = []
    families = load_families(path, data, Callbacks(log=lambda level, m: logs.append(m)))
    assert [f.name for f in families] == ["One", "Two"]
    assert families[0].tile == 32 and families[0].roots == (data / "one",)
    assert any("Absent is left out" in m and "nowhere" in m for m in logs)
    assert any("Partial is left out: partial labels" in m for m in logs)


def test_a_file_that_is_not_a_suite_is_a_user_error(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text("[1, 2]")
    with pytest.raises(KdmsiError, match="families"):
        load_families(bad, tmp_path, Callbacks())


def test_the_suite_command_reports_every_family_budget_and_curve(suite, tmp_path):
    path, data = suite
    out = tmp_path / "suite.json"
    args = ["--suite", path, "--data-root", data, "--budgets", 0, 4, "--out", out]
    args += ["--strategies", "random", "suggest"]
    args += ["--train-fraction", 0.5, "--epochs", 1, "--batch-size", 2, "--refine-epochs", 0]
    run = subprocess.run(
        [sys.executable, "-m", "core", "benchmark", *map(str, args), "--device", "cpu", "--jsonl"],
        cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert set(payload["families"]) == {"One", "Two"}
    for per_setting in payload["families"].values():
        assert set(per_setting) == {"0", "4", "4 suggest"}
        assert sum(per_setting["0"][0]["data"]["train"].values()) == 6
        assert sum(per_setting["4"][0]["data"]["train"].values()) == 4
        assert sum(per_setting["4 suggest"][0]["data"]["train"].values()) == 4
    tables = payload["tables_markdown"]
    assert "**all training tiles tagged**" in tables and "**4 tagged training tiles**" in tables
    assert "**4 tagged training tiles, chosen with suggest**" in tables
    assert tables.count(MEAN_ROW) == 3 and "| One | 6 |" in tables and "| Two | 4 |" in tables
    first_round = tmp_path / "suite" / "one" / "4_suggest" / "seed0" / "first_round" / "model.pt"
    assert first_round.is_file()
    assert [Path(p).name for p in payload["curves"]] == ["one.png", "two.png"]
    assert all(Path(p).stat().st_size > 1000 for p in payload["curves"])
    assert len(list((tmp_path / "suite").glob("*/*/seed0/result.json"))) == 6

    # an interrupted or split suite is put together from the kept results, without running again
    again = tmp_path / "again.json"
    reuse = [a if a != out else again for a in args] + ["--run-dir", tmp_path / "suite"]
    rerun = subprocess.run(
        [sys.executable, "-m", "core", "benchmark", *map(str, reuse), "--reuse-models",
         "--device", "cpu", "--jsonl"],
        cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rerun.stdout.count("suite: reusing") == 6 and "Epoch" not in rerun.stdout
    assert json.loads(again.read_text())["families"] == payload["families"]


def run_suite_command(args: list) -> subprocess.CompletedProcess:
    """``kdmsi benchmark ARGS --device cpu --jsonl`` in a child process of one thread."""
    return subprocess.run(
        [sys.executable, "-m", "core", "benchmark", *map(str, args), "--device", "cpu", "--jsonl"],
        cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def test_a_suite_split_in_parts_is_put_together_by_a_reuse_run(suite, tmp_path):
    path, data = suite
    base = ["--suite", path, "--data-root", data, "--budgets", 4, "--train-fraction", 0.5]
    base += ["--epochs", 1, "--batch-size", 2, "--refine-epochs", 0, "--run-dir", tmp_path / "r"]
    for part, family in (("0/2", "One"), ("1/2", "Two")):
        run = run_suite_command([*base, "--part", part, "--out", tmp_path / f"{part[0]}.json"])
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f"Part {part} of the suite: {family}." in run.stdout
        assert set(json.loads((tmp_path / f"{part[0]}.json").read_text())["families"]) == {family}
    gather = run_suite_command([*base, "--reuse-models", "--out", tmp_path / "all.json"])
    assert gather.returncode == 0, gather.stdout[-3000:] + gather.stderr[-3000:]
    assert gather.stdout.count("suite: reusing") == 2 and "Epoch" not in gather.stdout
    assert set(json.loads((tmp_path / "all.json").read_text())["families"]) == {"One", "Two"}


@pytest.mark.parametrize("text", ["2/2", "1", "a/2", "-1/2", "1/0"])
def test_a_part_that_is_not_k_of_n_is_refused_in_one_sentence(text):
    run = run_suite_command(["--suite", "s.json", "--data-root", ".", "--out", "o.json",
                             f"--part={text}"])  # fmt: skip
    assert run.returncode == 2
    error = json.loads(run.stdout.splitlines()[-1])
    assert error["event"] == "error"
    assert f"{text!r} is not a part: write K/N with 0 <= K < N, e.g. 0/2" in error["message"]


def test_suggest_tags_the_tiles_the_first_model_is_least_sure_about_or_sees_most_change(
    suite, tmp_path
):
    import torch

    from core.detect.quick_map import quick_map, quick_scores
    from core.detect.tile_ranking import tile_peaks
    from core.eval.benchmark_data import load_benchmark_data
    from core.eval.strategies import choose_tagged_tiles
    from core.models.model_file import load_model
    from core.train.trainer import TrainParams

    _, data_root = suite
    logs = []
    callbacks = Callbacks(log=lambda level, m: logs.append(m))
    data = load_benchmark_data([data_root / "one"], 32, None, 0.5, 0, callbacks)
    params = TrainParams(backbone="resnet18", pretrained=False, epochs=1, batch_size=2)
    cpu = torch.device("cpu")
    chosen = choose_tagged_tiles(data, 4, "suggest", params, (1, 2, 3), tmp_path, cpu, callbacks)
    assert len(chosen.train) == 4 and set(chosen.train) <= set(data.train)
    assert np.array_equal(chosen.test, data.test)
    first = budget_subset(data, 2, 0).train
    assert set(first) <= set(chosen.train)  # the random half stays tagged
    assert any("least sure" in m for m in logs)
    model = tmp_path / "first_round" / "model.pt"
    assert model.is_file()
    stamp = model.stat().st_mtime_ns
    again = choose_tagged_tiles(
        data, 4, "suggest", params, (1, 2, 3), tmp_path, cpu, callbacks, reuse=True
    )
    assert model.stat().st_mtime_ns == stamp and any("reusing the first" in m for m in logs)
    assert np.array_equal(again.train, chosen.train)
    random = choose_tagged_tiles(data, 4, "random", params, (1, 2, 3), tmp_path, cpu, callbacks)
    assert np.array_equal(random.train, budget_subset(data, 4, 0).train)
    peaks = choose_tagged_tiles(
        data, 4, "suggest-peaks", params, (1, 2, 3), tmp_path, cpu, callbacks, reuse=True
    )
    assert set(first) <= set(peaks.train) and len(peaks.train) == 4
    assert any("sees the most change" in m for m in logs)
    pool = np.setdiff1d(data.train, first)
    info, states = load_model(model)
    chosen_map = quick_map(info)
    prob = quick_scores(chosen_map, info, states, model, data.tiles.subset(pool), cpu)
    peak = dict(zip(pool.tolist(), tile_peaks(prob, data.tiles.valid[pool]).tolist()))
    extra = np.setdiff1d(peaks.train, first)
    untagged = np.setdiff1d(pool, extra)
    assert min(peak[i] for i in extra) >= max(peak[i] for i in untagged)  # the highest peaks


def scored(f1: dict[str, float]) -> dict:
    """A run as the suite keeps it, with only what the tables read."""
    rows = [{"method": method, "metrics": {"f1": value}} for method, value in f1.items()]
    return {"rows": rows, "data": {"train": {"changed": 3, "unchanged": 2}}, "training": {}}


def test_the_table_gives_the_spread_of_the_family_mean_over_seeds():
    runs = {  # family -> per seed (CVA, product)
        "One": [(0.2, 0.4), (0.3, 0.5), (0.1, 0.3)],
        "Two": [(0.4, 0.2), (0.5, 0.3), (0.3, 0.7)],
    }
    results = {
        "settings": [{"key": "48", "budget": 48, "strategy": "random"}],
        "seeds": [0, 1, 2],
        "families": {
            name: {"48": [scored({"CVA": c, "Product": p}) for c, p in seeds]}
            for name, seeds in runs.items()
        },
    }
    assert seed_means(results, "48", "Product") == pytest.approx([0.3, 0.4, 0.5])
    table = markdown_tables(results)
    assert f"| {SPREAD_ROW} | | | 0.300 ± 0.100 | 0.400 ± 0.100 |" in table
    assert f"| **{MEAN_ROW}** | | | 0.300 | 0.400 |" in table
    results["families"]["Two"]["48"].pop()  # a seed one family lacks is left out of the spread
    assert seed_means(results, "48", "Product") == pytest.approx([0.3, 0.4])
    results["seeds"] = [0]
    assert SPREAD_ROW not in markdown_tables(results)  # one seed: no spread to give
