"""Issue 18: the default peak ratio on maps it was not chosen on (reports only; it decides nothing).

``hysteresis.py`` adopted the peak rule on the product's maps at 48 tags. ``vectorize`` applies
it to any map, so this script scores it where it was not judged: the student's own map
(``--method kdmsi``) of the suite's 48-tag models, and both maps of the pooled LEVIR-CD + WHU-CD
protocol (269 tags), each cut at its ``kdmsi_threshold``, with and without the regions that
never reach the default ratio times the threshold (:func:`core.eval.whole_pair.polygon_map`).
Usage::

    python docs/experiments/peak_other_maps.py suite RUN SUITE DATA [--seeds 0 1 2]
    python docs/experiments/peak_other_maps.py pooled RUN DATASET [DATASET ...] [--seeds 0 1 2]

(a suite run holds ``<family>/48/seed<S>/detect/``; a pooled run ``seed<S>/detect/``.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hysteresis import whole_maps  # noqa: E402
from product_maps import budget_data, model_path  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.eval.benchmark_data import BenchmarkData, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, load_families  # noqa: E402
from core.eval.whole_pair import polygon_map, tiles_from_maps  # noqa: E402


def scores(data: BenchmarkData, family: Family, folder: Path, method: str) -> list[float]:
    """Training and test tiles' F1 of one map, plain cut then peak rule."""
    maps, cut = whole_maps(family, folder, method)
    out = []
    for rule in (False, True):
        whole = {k: polygon_map(v, cut) if rule else v for k, v in maps.items()}
        tiles = tiles_from_maps(data, whole) >= cut
        for index in (data.train, data.test):
            matrix = ConfusionMatrix().update(tiles[index], data.truth[index],
                                              data.tiles.valid[index])  # fmt: skip
            out.append(matrix.as_dict()["f1"])
    return [out[0], out[2], out[1], out[3]]  # train plain, train peak, test plain, test peak


def rows(args: argparse.Namespace) -> dict[str, list[float]]:
    """``name: scores`` for every family (or the pooled pair) and seed."""
    found = {}
    for seed in args.seeds:
        if args.mode == "suite":
            families = load_families(Path(args.paths[1]), Path(args.paths[2]), Callbacks())
            for family in families:
                model = model_path(Path(args.paths[0]), family, 48, seed)
                if model.exists():
                    data = budget_data(family, 48, seed)
                    found[f"{family.name}, kdmsi, seed {seed}"] = scores(
                        data, family, model.parent / "detect", "kdmsi"
                    )
        else:
            family = Family("pooled", tuple(Path(p) for p in args.paths[1:]))
            data = load_benchmark_data(list(family.roots), 128, None, 0.7, seed, Callbacks())
            for method in ("kdmsi-cva", "kdmsi"):
                folder = Path(args.paths[0]) / f"seed{seed}" / "detect"
                found[f"pooled, {method}, seed {seed}"] = scores(data, family, folder, method)
        for name in [n for n in found if n.endswith(f"seed {seed}")]:
            print(name, [round(v, 3) for v in found[name]], flush=True)
    return found


def main() -> None:
    """Print each map's F1 (training, test tiles; plain cut, peak rule) and the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("suite", "pooled"))
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    found = rows(args)
    print("| map, seed | train: plain, peak | test: plain, peak |\n|---|---|---|")
    for name, v in found.items():
        print(f"| {name} | {v[0]:.3f}, {v[1]:.3f} | {v[2]:.3f}, {v[3]:.3f} |")
    for method in ("kdmsi-cva", "kdmsi"):
        chosen = np.array([v for n, v in found.items() if f", {method}, " in n])
        if chosen.size:
            m = chosen.mean(axis=0)
            print(f"| mean, {method} | {m[0]:.3f}, {m[1]:.3f} | {m[2]:.3f}, {m[3]:.3f} |")


if __name__ == "__main__":
    main()
