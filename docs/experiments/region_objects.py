"""Issue 18: what the peak ratio does to the polygons a user gets, counted as objects.

For every family of a suite run folder, on the whole-pair maps ``kdmsi benchmark`` kept
(``<family>/<budget>/seed<S>/detect/<method auto>/``), each cut at its ``kdmsi_threshold`` with
and without the regions the default peak ratio leaves out
(:func:`core.eval.whole_pair.polygon_map`), it counts the regions of at least 9 pixels (the
polygons ``vectorize`` writes by default) and the ground truth's change objects (4-connected, at
least 9 pixels): polygons, polygons touching a true change pixel, and true objects touched by a
polygon. The labels only describe here; they choose nothing. Usage::

    python docs/experiments/region_objects.py RUN SUITE DATA [--budget 48] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from osgeo import gdal
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hysteresis import FOUR, whole_maps  # noqa: E402
from product_maps import model_path  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.data.datasets import find_pairs  # noqa: E402
from core.detect.params import resolve_method  # noqa: E402
from core.eval.suite import Family, load_families  # noqa: E402
from core.eval.whole_pair import polygon_map  # noqa: E402

SMALLEST = 9  # pixels: the default smallest polygon


def objects(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 4-connected labels of ``mask`` and which labels hold at least ``SMALLEST`` pixels."""
    labels, count = ndimage.label(mask, structure=FOUR)
    big = np.bincount(labels.ravel(), minlength=count + 1) >= SMALLEST
    big[0] = False
    return labels, big


def counts(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Polygons, those touching true change, true objects, those touched by a polygon."""
    labels, big = objects(mask)
    true_labels, true_big = objects(truth)
    hit = np.bincount(labels[truth], minlength=big.size) > 0
    found = np.bincount(true_labels[big[labels]], minlength=true_big.size) > 0
    return np.array([big.sum(), (big & hit).sum(), true_big.sum(), (true_big & found).sum()])


def family_counts(family: Family, run: Path, budget: int, seeds: list[int]) -> np.ndarray:
    """``counts`` summed over the family's pairs and seeds: plain cut (row 0), peak rule (1)."""
    truth = {}
    for root in family.roots:
        for files in find_pairs(root):
            ds = gdal.Open(str(files.label))
            truth[files.key] = ds.GetRasterBand(1).ReadAsArray() > 0
    total = np.zeros((2, 4), np.int64)
    for seed in seeds:
        model = model_path(run, family, budget, seed)
        maps, cut = whole_maps(family, model.parent / "detect", resolve_method("auto", model))
        for key, values in maps.items():
            total[0] += counts(values >= cut, truth[key])
            total[1] += counts(polygon_map(values, cut) >= cut, truth[key])
    return total


def line(name: str, c: np.ndarray) -> str:
    """A markdown row: polygons, share touching true change, share of true objects found."""
    return (
        f"| {name} | {c[0, 0]} -> {c[1, 0]} | {c[0, 1] / c[0, 0]:.0%} -> {c[1, 1] / c[1, 0]:.0%} "
        f"| {c[0, 0] - c[0, 1]} -> {c[1, 0] - c[1, 1]} "
        f"| {c[0, 3] / c[0, 2]:.0%} -> {c[1, 3] / c[1, 2]:.0%} of {c[0, 2]} |"
    )


def main() -> None:
    """Print one row per family and the sum over families."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("suite", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    gdal.UseExceptions()
    print("| family | polygons | touching true change | false alarms | true objects found |")
    print("|---|---|---|---|---|")
    total = np.zeros((2, 4), np.int64)
    for family in load_families(args.suite, args.data_root, Callbacks()):
        if not model_path(args.run, family, args.budget, args.seeds[0]).exists():
            continue  # not in this run (Taizhou's partial labels)
        c = family_counts(family, args.run, args.budget, args.seeds)
        total += c
        print(line(family.name, c), flush=True)
    print(line("all", total))


if __name__ == "__main__":
    main()
