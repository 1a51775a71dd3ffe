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
) -> None:
    """Parse ``RUN SUITE DATA [--budget B] [--seed S] [--only NAME ...]``, score, print a report.

    Each family's row (``family_row(family, run, budget, seed)``) is printed as soon as it is
    done, then ``report`` of all rows.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path, help="the suite run's folder (--run-dir)")
    parser.add_argument("suite", type=Path, help="the suite file")
    parser.add_argument("data_root", type=Path, help="the data folder (--data-root)")
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="family names to score (default: all)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = {}
    for family in load_families(args.suite, args.data_root, Callbacks()):
        if not args.only or family.name in args.only:
            rows[family.name] = family_row(family, args.run, args.budget, args.seed)
            print(family.name, {k: round(v, 3) for k, v in rows[family.name].items()}, flush=True)
    print(report(rows))


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
