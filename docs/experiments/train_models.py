"""Train a transfer-suite run's models without scoring them (for the post-training trials).

``kdmsi benchmark --suite`` trains each family's model and then scores every method on the test
tiles and on whole pairs, about a third of its time. The scripts of this folder judge their
candidates on the training tiles of the models alone, so a further seed only needs the models:
this trains them exactly as the suite does (same tiles, split, tags, parameters and folders:
``RUN/<family>/<budget>/seed<S>/model.pt``), skipping families whose model is finished. A later
``kdmsi benchmark --suite ... --reuse-models --run-dir RUN`` scores them without training. Usage::

    OMP_NUM_THREADS=1 python docs/experiments/train_models.py RUN SUITE DATA --seed 1 --part 0/2

``--backbone efficientnet-lite2`` trains the candidate of ``backbone_trial.py``, ``--pool-share
0.25`` the one of ``pool_share.py``, ``--min-steps 800`` the one of ``steps_trial.py``,
``--student-fusion abs`` the one of ``student_fusion.py``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.callbacks import Callbacks  # noqa: E402
from core.choices import CHOICES, DEFAULTS  # noqa: E402
from core.cli.benchmark import parse_part  # noqa: E402
from core.eval.benchmark import BenchmarkParams  # noqa: E402
from core.eval.benchmark_data import load_benchmark_data  # noqa: E402
from core.eval.strategies import choose_tagged_tiles  # noqa: E402
from core.eval.suite import Family, load_families, part_of, slug  # noqa: E402
from core.models.model_file import finished_model  # noqa: E402
from core.train.pipeline import train_model  # noqa: E402
from core.train.refinement import RefineParams  # noqa: E402

CPU = torch.device("cpu")


def train_family(
    family: Family,
    run: Path,
    budget: int,
    seed: int,
    callbacks: Callbacks,
    backbone: str,
    pool_share: float = 1.0,
    min_steps: int = 0,
    student_fusion: str = DEFAULTS.student_fusion,
) -> None:
    """Train one family's model as the suite's ``run_benchmark`` does, unless it is finished."""
    folder = run / slug(family.name) / slug(str(budget)) / f"seed{seed}"
    if finished_model(folder / "model.pt"):
        callbacks.info(f"{family.name}: {folder / 'model.pt'} is finished; skipped.")
        return
    base = BenchmarkParams(refine=RefineParams(epochs=0))
    params = replace(
        base, tile=family.tile, bands=family.bands, seed=seed, budget=budget,
        train=replace(base.train, seed=seed, backbone=backbone, pool_share=pool_share,
                      min_steps=min_steps, student_fusion=student_fusion),
        refine=replace(base.refine, seed=seed),
    )  # fmt: skip
    data = load_benchmark_data(
        list(family.roots), params.tile, params.bands, params.train_fraction, seed, callbacks
    )
    bands = params.bands or tuple(range(1, data.tiles.before.shape[1] + 1))
    data = choose_tagged_tiles(
        data, budget, params.strategy, params.train, bands, folder, CPU, callbacks, params.reuse
    )
    train_model(
        data.tiles.subset(data.train), params.train, bands, folder, CPU, callbacks,
        refine_params=params.refine,
    )  # fmt: skip


def main() -> None:
    """Parse ``RUN SUITE DATA [--budget B] [--seed S] [--part K/N] [--backbone B] ...``; train."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("suite", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", type=parse_part)
    parser.add_argument("--backbone", default=DEFAULTS.backbone, choices=CHOICES["backbone"])
    parser.add_argument("--pool-share", type=float, default=1.0, help="the teacher's top share")
    parser.add_argument("--min-steps", type=int, default=0, help="train at least this many steps")
    parser.add_argument(
        "--student-fusion", default=DEFAULTS.student_fusion, choices=CHOICES["fusion"]
    )
    args = parser.parse_args()
    callbacks = Callbacks(log=lambda _level, message: print(message, flush=True))
    families = load_families(args.suite, args.data_root, callbacks)
    for family in part_of(families, args.part) if args.part else families:
        train_family(family, args.run, args.budget, args.seed, callbacks, args.backbone,
                     args.pool_share, args.min_steps, args.student_fusion)  # fmt: skip


if __name__ == "__main__":
    main()
