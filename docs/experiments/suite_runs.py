"""What the experiment scripts share: the command line and the loop over a suite run's families."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch

from core.callbacks import Callbacks
from core.eval.suite import Family, load_families

Row = dict[str, float]


def score_families(
    description: str,
    family_row: Callable[[Family, Path, int, int], Row],
    report: Callable[[dict[str, Row]], str],
    rules: dict[str, str] | None = None,
) -> None:
    """Parse ``RUN SUITE DATA [--budget B] [--seed S | --seeds S ...] [--only NAME ...]``; score.

    Each family's row (``family_row(family, run, budget, seed)``) is printed as soon as it is
    done, then ``report`` of all rows. With several ``--seeds`` the rows are named "family, seed
    S", and each of ``rules`` (rule: the rule it is judged against) is also judged on every
    family's F1 averaged over the seeds first (:func:`seed_means`).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path, help="the suite run's folder (--run-dir)")
    parser.add_argument("suite", type=Path, help="the suite file")
    parser.add_argument("data_root", type=Path, help="the data folder (--data-root)")
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="*", help="several seeds (instead of --seed)")
    parser.add_argument("--only", nargs="*", help="family names to score (default: all)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    seeds = args.seeds or [args.seed]
    rows = {}
    for family in load_families(args.suite, args.data_root, Callbacks()):
        if args.only and family.name not in args.only:
            continue
        for seed in seeds:
            name = family.name if len(seeds) == 1 else f"{family.name}, seed {seed}"
            rows[name] = family_row(family, args.run, args.budget, seed)
            print(name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    print(report(rows))
    if len(seeds) > 1:
        print("\nEvery family's F1 averaged over seeds " + ", ".join(map(str, seeds)) + " first:")
        for rule, base in (rules or {}).items():
            print(verdict(seed_means(rows), rule, base))


def seed_means(rows: dict[str, Row]) -> dict[str, Row]:
    """Rows named "family, seed S" averaged per family (F1 keys only, not the picks)."""
    grouped: dict[str, list[Row]] = {}
    for name, row in rows.items():
        grouped.setdefault(name.rsplit(", seed ", 1)[0], []).append(row)
    return {
        family: {key: sum(r[key] for r in group) / len(group) for key in group[0]
                 if key.startswith(("train ", "test "))}
        for family, group in grouped.items()
    }  # fmt: skip


def verdict(rows: dict[str, Row], rule: str, base: str, digits: int = 3) -> str:
    """The adoption rule's sentence for ``rule`` against ``base`` on the training tiles.

    Adopted when the mean over families rises and no family falls by more than 0.02.
    """
    gain = [row[f"train {rule}"] - row[f"train {base}"] for row in rows.values()]
    mean = sum(gain) / len(gain)
    adopted = mean > 0 and min(gain) >= -0.02
    return (
        f"\n{rule} (against {base}): mean gain on training tiles {mean:+.{digits}f}, worst "
        f"family {min(gain):+.3f}: {'adopt' if adopted else 'drop'}"
    )


def seed_verdicts(rows: dict[str, Row], rules: dict[str, str]) -> list[str]:
    """Each rule's verdict on each seed's rows alone ("family, seed S"), or on all rows.

    Rows without a seed in their name (one ``--seed``) are judged together.
    """
    seeds = sorted({name.rsplit(", seed ", 1)[1] for name in rows if ", seed " in name})
    if not seeds:
        return [verdict(rows, rule, base, 4) for rule, base in rules.items()]
    lines = []
    for seed in seeds:
        alone = {k: v for k, v in rows.items() if k.endswith(f", seed {seed}")}
        lines.append(f"\nSeed {seed} alone:")
        lines.extend(verdict(alone, rule, base, 4) for rule, base in rules.items())
    return lines


def table_lines(
    rows: dict[str, Row],
    names: list[str] | tuple[str, ...],
    heading: str,
    cell: Callable[[Row, str], str],
    lead: tuple[str, Callable[[Row], str]] | None = None,
) -> list[str]:
    """A markdown table: a line per row, ``cell(row, name)`` per name, and the mean line.

    Columns are headed "NAME: heading"; ``lead`` (title, value of a row) adds one column after
    the family's. The mean line gives the mean training and test F1 of each name.
    """
    first = f" {lead[0]} |" if lead else ""
    lines = [f"| family |{first} " + " | ".join(f"{n}: {heading}" for n in names) + " |",
             "|---|" + "---|" * (len(names) + bool(lead))]  # fmt: skip
    for family, row in rows.items():
        value = f" {lead[1](row)} |" if lead else ""
        lines.append(f"| {family} |{value} " + " | ".join(cell(row, n) for n in names) + " |")
    blank = " |" if lead else ""
    lines.append(f"| mean |{blank} " + " | ".join(mean_cells(rows, names)) + " |")
    return lines


def train_test(row: Row, name: str) -> str:
    """A table cell: the training and the test tiles' F1 of ``name``."""
    return f"{row[f'train {name}']:.3f}, {row[f'test {name}']:.3f}"


def mean_cells(rows: dict[str, Row], names: list[str] | tuple[str, ...]) -> list[str]:
    """Per name, "train, test": the mean over ``rows`` of ``train NAME`` and ``test NAME``."""
    return [
        f"{sum(r[f'train {n}'] for r in rows.values()) / len(rows):.3f}, "
        f"{sum(r[f'test {n}'] for r in rows.values()) / len(rows):.3f}"
        for n in names
    ]
