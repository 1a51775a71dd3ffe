"""The transfer suite: the benchmark run on every dataset family separately, at several tag budgets.

A choice tuned on one family does not transfer to a user's imagery; the suite reports each family
on its own and the mean over families, for every method side by side, at all training tags and
at a user's budget (a few dozen tags). The families are listed in a suite file (JSON)::

    {"families": [
        {"name": "LEVIR-CD", "folders": ["levir_cd_bit", "levir_cd_full_scm"], "tile": 128},
        {"name": "OSCD Mumbai", "folders": ["geo_oscd_mumbai"], "bands": [3, 2, 1]},
        {"name": "Taizhou", "folders": ["geo_taizhou_landsat"], "skip": "why it cannot run"}
    ]}

Folders are relative to the data root; a family whose folders are missing is left out with a
message, as is one with a ``skip`` reason. Every run leaves ``result.json`` in its folder; with
``--reuse-models`` a kept result is read instead of run again and a finished model is scored
instead of trained again, so an interrupted suite goes on where it stopped (and suites run in
parts, e.g. one process per group of families, are put together by one more run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.eval.benchmark import BenchmarkParams, run_benchmark

MEAN_ROW = "mean over families"
SPREAD_ROW = "mean over families, ± std over seeds"
RESULT_FILE = "result.json"
CHOSEN_NOTE = (
    "*auto chose*: the map `detect --method auto` ran in each seed's run "
    "(core/train/method_choice.py: the combined map `kdmsi-cva` since session 16, before that "
    "chosen on held-out tags); `?` marks a model whose map did not beat chance on held-out tags."
)


@dataclass(frozen=True)
class Family:
    """One dataset family of the suite.

    Attributes:
        name: shown in the tables.
        roots: its dataset folders (A/, B/, label/ each).
        tile: tile size in pixels.
        bands: bands read from both dates (None: the first three).
    """

    name: str
    roots: tuple[Path, ...]
    tile: int = 128
    bands: tuple[int, ...] | None = None


def load_families(path: Path, data_root: Path, callbacks: Callbacks) -> list[Family]:
    """The runnable families of a suite file, saying why any other is left out.

    Raises:
        KdmsiError: a file that is not a suite, or one with no runnable family.
    """
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))["families"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KdmsiError(
            f"The suite file {path} cannot be read as a suite ({exc}); it needs a JSON object "
            'with a "families" list (see core/eval/suite.py).'
        ) from exc
    families = []
    for entry in entries:
        roots = tuple(Path(data_root) / folder for folder in entry["folders"])
        if entry.get("skip"):
            callbacks.warning(f"{entry['name']} is left out: {entry['skip']}")
        elif missing := [str(r) for r in roots if not r.is_dir()]:
            callbacks.warning(f"{entry['name']} is left out: {', '.join(missing)} not found.")
        else:
            bands = tuple(entry["bands"]) if entry.get("bands") else None
            families.append(Family(entry["name"], roots, int(entry.get("tile", 128)), bands))
    if not families:
        raise KdmsiError(f"No family of {path} can run with the data in {data_root}.")
    return families


def part_of(families: list[Family], part: tuple[int, int]) -> list[Family]:
    """Every ``count``-th family from the ``index``-th (``part = (index, count)``, index from 0).

    ``count`` processes given the parts ``0/count`` to ``count - 1/count`` run every family once;
    a last run with ``--reuse-models`` over the same run folder puts the tables together.
    """
    index, count = part
    return families[index::count]


def settings_of(budgets: tuple[int, ...], strategies: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every (budget, strategy) to run, keyed ``"48"`` (random) or ``"48 suggest"``.

    All training tiles (budget 0) need no strategy; each other budget runs every strategy.
    """
    settings = []
    for budget in budgets:
        for strategy in strategies if budget > 0 else ("random",):
            key = str(budget) if strategy == "random" else f"{budget} {strategy}"
            settings.append({"key": key, "budget": budget, "strategy": strategy})
    return settings


def run_suite(
    families: list[Family],
    base: BenchmarkParams,
    settings: list[dict[str, Any]],
    seeds: tuple[int, ...],
    run_dir: Path,
    device: torch.device,
    callbacks: Callbacks,
) -> dict[str, Any]:
    """Run the benchmark for every family, setting (:func:`settings_of`) and seed.

    Returns:
        ``{"families": {name: {key: [run per seed]}}, "settings": [...], "seeds": [...]}``,
        each run as :func:`core.eval.benchmark.run_benchmark` returns it.
    """
    results: dict[str, Any] = {"families": {}, "settings": settings, "seeds": list(seeds)}
    for family in families:
        per_setting: dict[str, list] = {}
        for setting in settings:
            runs = []
            for seed in seeds:
                callbacks.info(f"suite: {family.name}, tags {setting['key']}, seed {seed}")
                params = replace(
                    base, tile=family.tile, bands=family.bands, seed=seed,
                    budget=setting["budget"], strategy=setting["strategy"],
                    train=replace(base.train, seed=seed), refine=replace(base.refine, seed=seed),
                )  # fmt: skip
                folder = run_dir / slug(family.name) / slug(setting["key"]) / f"seed{seed}"
                runs.append(_run_once(list(family.roots), params, folder, device, callbacks))
            per_setting[setting["key"]] = runs
        results["families"][family.name] = per_setting
    return results


def _run_once(
    roots: list[Path],
    params: BenchmarkParams,
    folder: Path,
    device: torch.device,
    callbacks: Callbacks,
) -> dict[str, Any]:
    """One benchmark run, kept as ``folder/result.json`` (read back instead with ``reuse``)."""
    kept = folder / RESULT_FILE
    if params.reuse and kept.is_file():
        callbacks.info(f"suite: reusing {kept}")
        return json.loads(kept.read_text(encoding="utf-8"))
    result = run_benchmark(roots, params, folder, device, callbacks)
    kept.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return result


def slug(name: str) -> str:
    """A file name for a family or setting: letters and digits, the rest ``_``."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def f1_table(results: dict[str, Any], key: str) -> tuple[list[str], dict[str, list[float]]]:
    """Methods, and per family the changed-class F1 of each method (mean over seeds).

    ``key`` names a setting (:func:`settings_of`). Families that lack a method (e.g. no refined
    network) get NaN there.
    """
    methods: list[str] = []
    for per_setting in results["families"].values():
        for run in per_setting.get(key, []):
            methods += [r["method"] for r in run["rows"] if r["method"] not in methods]
    table = {}
    for family, per_setting in results["families"].items():
        table[family] = [_mean_f1(per_setting.get(key, []), method) for method in methods]
    return methods, table


def _mean_f1(runs: list[dict], method: str) -> float:
    values = [r["metrics"]["f1"] for run in runs for r in run["rows"] if r["method"] == method]
    return float(np.mean(values)) if values else float("nan")


def markdown_tables(results: dict[str, Any]) -> str:
    """One table per setting: families x methods (changed-class F1), and the mean over families."""
    parts = []
    for setting in results["settings"]:
        key, budget = setting["key"], setting["budget"]
        methods, table = f1_table(results, key)
        seeds = len(results["seeds"])
        title = "all training tiles tagged" if budget <= 0 else f"{budget} tagged training tiles"
        title += f", chosen with {setting['strategy']}" if setting["strategy"] != "random" else ""
        lines = [
            f"**{title}** (changed-class F1, mean over {seeds} seed(s))",
            "",
            "| family | tags | auto chose | " + " | ".join(methods) + " |",
            "|---|---|---|" + "---|" * len(methods),
        ]
        for family, values in table.items():
            runs = results["families"][family][key]
            cells = [family, _tags(runs), _chosen(runs)] + [_cell(v) for v in values]
            lines.append("| " + " | ".join(cells) + " |")
        mean = np.nanmean(np.array(list(table.values())), axis=0) if table else []
        lines.append(f"| **{MEAN_ROW}** | | | " + " | ".join(_cell(v) for v in mean) + " |")
        if seeds > 1:
            spread = [_spread(seed_means(results, key, method)) for method in methods]
            lines.append(f"| {SPREAD_ROW} | | | " + " | ".join(spread) + " |")
        lines += ["", CHOSEN_NOTE]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def seed_means(results: dict[str, Any], key: str, method: str) -> list[float]:
    """Per seed, the mean over families of ``method``'s F1 (seeds some family lacks: left out).

    The spread of these means is what a second draw of tags and training would change; the
    table's mean row averages them.
    """
    means = []
    for index in range(len(results["seeds"])):
        values = []
        for per_setting in results["families"].values():
            runs = per_setting.get(key, [])
            rows = runs[index]["rows"] if index < len(runs) else []
            values += [r["metrics"]["f1"] for r in rows if r["method"] == method]
        if values and len(values) == len(results["families"]):
            means.append(float(np.mean(values)))
    return means


def _spread(means: list[float]) -> str:
    """``mean ± std`` (sample std) of per-seed means, or ``n/a`` with fewer than two."""
    if len(means) < 2:
        return "n/a"
    return f"{np.mean(means):.3f} ± {np.std(means, ddof=1):.3f}"


def _chosen(runs: list[dict]) -> str:
    """The map ``detect --method auto`` ran in each seed's run, ``?`` marking unreliable ones."""
    names = []
    for run in runs:
        choice = run.get("training", {}).get("method_choice") or {}
        mark = "" if choice.get("reliable", True) else "?"
        names.append(str(choice.get("method", "kdmsi")) + mark)
    return ", ".join(names)


def _tags(runs: list[dict]) -> str:
    counts = runs[0]["data"]["train"] if runs else {}
    return str(sum(counts.values())) if counts else "?"


def _cell(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"
