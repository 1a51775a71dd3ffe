"""Issue 18: how plainly the window lattice shows in the whole-pair maps a suite run kept.

For every family of a suite run folder, the mean grid contrast (``window_rules.grid_contrast``:
the map's mean over the central half of each detection window over its mean on the window's
border ring; 1.0 means no lattice) of the ``kdmsi-cva`` maps that ``kdmsi benchmark`` wrote
for its whole pairs (``<family>/<budget>/seed<S>/detect/kdmsi-cva/*.tif``), over all pairs and
seeds. Label-free; it reads the maps only. Usage::

    python docs/experiments/grid_contrast.py RUN [RUN ...] [--budget 48] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from osgeo import gdal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from window_rules import grid_contrast


def family_contrast(run: Path, budget: int, tile: int, seeds: list[int]) -> dict[str, float]:
    """Per family folder of ``run``, the mean grid contrast of its kept ``kdmsi-cva`` maps."""
    out = {}
    for family in sorted(p for p in run.iterdir() if (p / str(budget)).is_dir()):
        maps = sorted(
            m for s in seeds for m in family.glob(f"{budget}/seed{s}/detect/kdmsi-cva/*.tif")
        )
        if maps:
            values = [grid_contrast(gdal.Open(str(m)).ReadAsArray(), tile) for m in maps]
            out[family.name] = float(np.mean(values))
    return out


def main() -> None:
    """Print one column per run folder, one row per family, and the mean over families."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    gdal.UseExceptions()
    columns = [family_contrast(run, args.budget, args.tile, args.seeds) for run in args.runs]
    print("| family | " + " | ".join(str(run) for run in args.runs) + " |")
    print("|---|" + "---|" * len(columns))
    for name in columns[0]:
        print(f"| {name} | " + " | ".join(f"{c.get(name, np.nan):.3f}" for c in columns) + " |")
    means = [np.mean([c[name] for name in columns[0] if name in c]) for c in columns]
    print("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    main()
