"""The training speed measurement, run tiny (32 px tiles, batch 2, one timed step per child)."""

from __future__ import annotations

import json
import math

import pytest

from core.perf.train_speed import SpeedCase, SpeedResult, main, measure, parse_variant, summary


def test_parse_variant() -> None:
    variant = parse_variant(
        "old@/tmp/old:frozen_stages=0,freeze_bn=true,env.OMP_WAIT_POLICY=PASSIVE"
    )
    assert variant.name == "old" and variant.root == "/tmp/old"
    assert variant.overrides == {"frozen_stages": 0, "freeze_bn": True}
    assert variant.env == {"OMP_WAIT_POLICY": "PASSIVE"}
    plain = parse_variant("new:")
    assert (plain.name, plain.overrides, plain.env, plain.root) == ("new", {}, {}, None)


def test_summary_takes_medians_and_ratios_to_the_first_variant() -> None:
    def result(name: str, seconds: float, peak: float) -> SpeedResult:
        return SpeedResult(SpeedCase(name, 64, 4), [seconds], peak, [seconds])

    rows = summary(
        [result("a", 2.0, 100), result("b", 1.0, 50), result("a", 4.0, 300), result("b", 1.0, 70)]
    )
    by_name = {row["variant"]: row for row in rows}
    assert by_name["a"]["tiles_per_s"] == pytest.approx(1.5)  # median of 2 and 1 tiles/s
    assert by_name["b"]["speedup"] == pytest.approx(4 / 1.5, abs=0.01)  # rounded to 2 places
    assert by_name["a"]["peak_rss_mb"] == 200 and by_name["b"]["repeats"] == 2


def test_bad_override_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="no_such_field"):
        measure(
            SpeedCase("bad", tile=32, batch=2, steps=1, warmup=0, overrides={"no_such_field": 1})
        )


def test_command_line_measures_in_a_child_and_writes_json(tmp_path) -> None:
    out = tmp_path / "speed.json"
    variant = "f2:frozen_stages=2,env.OMP_WAIT_POLICY=PASSIVE"
    argv = ["--tile", "32", "--batch", "2", "--steps", "1", "--variant", variant]
    assert main([*argv, "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert [row["variant"] for row in payload["summary"]] == ["f2"]
    (result,) = payload["results"]
    assert result["case"]["overrides"] == {"frozen_stages": 2}
    assert result["case"]["env"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert len(result["step_seconds"]) == 1 and len(result["cpu_seconds"]) == 1
    assert result["tiles_per_s"] > 0 and math.isfinite(result["tiles_per_cpu_s"])
    assert result["peak_rss_mb"] > 100  # torch and two EfficientNet-Lite0 networks
