"""Train KD-MSI (teacher and student jointly, by distillation) from tile tags.

Tags come from dataset folders in the A/B/label layout (``--data``; a tile is changed when any of
its mask pixels is) or from a pair and a tag layer made by ``kdmsi grid`` or the QGIS plugin
(``--before --after --tags``). The run folder receives ``model.pt`` (the epoch with the best
held-out image-level AUC), ``checkpoint.pt`` (for ``--resume``), ``log.csv`` and ``curves.png``.
SIGTERM saves the checkpoint and exits.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from core.choices import CHOICES, DEFAULTS
from core.cli.events import Reporter
from core.cli.options import add_affinity_rounds, add_epochs, add_min_steps
from core.errors import KdmsiError
from core.io.bands import parse_bands

if TYPE_CHECKING:
    from core.runtime.distributed import DistEnv
    from core.train.trainer import TrainParams, TrainResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi train``."""
    source = parser.add_argument_group("tags (one of)")
    source.add_argument(
        "--data", type=Path, nargs="+", help="dataset folder(s) with A/, B/, label/"
    )
    source.add_argument("--before", "-a", type=Path, help="before raster (with --tags)")
    source.add_argument("--after", "-b", type=Path, help="after raster (with --tags)")
    source.add_argument(
        "--tags", type=Path, help="tag layer (.gpkg) from `kdmsi grid` or the plugin"
    )
    parser.add_argument(
        "--bands", type=parse_bands, help="1-based bands, e.g. 3,2,1 (default first three)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="run folder (model.pt is written there)"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=DEFAULTS.tile,
        help=f"tile size with --data (default {DEFAULTS.tile})",
    )
    add_epochs(parser)
    add_min_steps(parser)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help="base learning rate (x10 on the teacher head)"
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULTS.backbone,
        choices=CHOICES["backbone"],
    )
    parser.add_argument(
        "--weights", type=Path, help="backbone weights file (e.g. torchvision resnet50)"
    )
    parser.add_argument(
        "--output-stride", type=int, default=DEFAULTS.output_stride, choices=(8, 16)
    )
    parser.add_argument(
        "--teacher-fusion", default=DEFAULTS.teacher_fusion, choices=CHOICES["teacher_fusion"]
    )
    parser.add_argument(
        "--student-fusion", default=DEFAULTS.student_fusion, choices=CHOICES["fusion"]
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULTS.val_fraction,
        help="tags held out to choose the epoch",
    )
    parser.add_argument("--no-augment", action="store_true", help="no flips/rotations")
    parser.add_argument(
        "--frozen-stages",
        type=int,
        default=3,
        help="early backbone stages kept fixed and computed once for teacher and student "
        "(0: train all; default 3: the stem and the stages at stride 2 and 4 of "
        "efficientnet-lite0)",
    )
    parser.add_argument(
        "--freeze-bn", action="store_true", help="batch norm on its running statistics throughout"
    )
    parser.add_argument(
        "--precision",
        choices=CHOICES["precision"],
        default=DEFAULTS.precision,
        help="auto: float16 autocast on CUDA, bfloat16 on CPUs with native bfloat16, else float32",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument(
        "--refine-epochs",
        type=int,
        default=0,
        help="epochs of the refinement network (default 0: none; the student with MSI "
        "scored better in the benchmark); when trained, detect's auto runs it",
    )
    add_affinity_rounds(parser)


def _tiles(args: argparse.Namespace, callbacks: object) -> tuple[object, tuple[int, ...], str]:
    """The tagged tiles, the bands used and a name for messages."""
    from core.data.datasets import find_pairs
    from core.data.tilesets import TileSet
    from core.data.trainsets import tiles_from_tag_layer, tiles_of_pair

    if args.data and args.tags:
        raise KdmsiError("Give either --data or --before/--after/--tags, not both.")
    if args.data:
        pairs = [p for root in args.data for p in find_pairs(root)]
        sets = [tiles_of_pair(p, args.tile, args.bands, callbacks)[0] for p in pairs]
        bands = args.bands or tuple(range(1, sets[0].before.shape[1] + 1))
        return TileSet.concat(sets), bands, " ".join(str(d) for d in args.data)
    if not (args.before and args.after and args.tags):
        raise KdmsiError("Give --data DIR, or --before, --after and --tags together.")
    tiles = tiles_from_tag_layer(args.before, args.after, args.tags, args.bands, callbacks)
    return tiles, args.bands or tuple(range(1, tiles.before.shape[1] + 1)), str(args.tags)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Load the tags, train, and report the model file.

    Under ``torchrun`` every rank runs this; rank 0 alone reports (docs/distributed.md).
    OpenMP's passive wait policy is set by :func:`core.runtime.process.configure_process` before
    torch is imported.
    """
    from core.runtime import distributed

    env = distributed.detect()
    try:
        _train(args, reporter, env)
    finally:
        distributed.stop()


def _train(args: argparse.Namespace, reporter: Reporter, env: DistEnv) -> None:
    """Train in this process (one rank of ``env``)."""
    from core.callbacks import Callbacks
    from core.data.trainsets import check_tags
    from core.io.outputs import check_run_folder, training_bytes
    from core.runtime import distributed
    from core.runtime.devices import pick_device
    from core.train.pipeline import train_model
    from core.train.refinement import RefineParams

    check_run_folder(args.out, training_bytes(args.backbone))
    callbacks = reporter.callbacks("train")
    if not env.is_main:  # other ranks only listen for cancel
        callbacks = Callbacks(is_canceled=callbacks.is_canceled)
    tiles, bands, source = _tiles(args, callbacks)
    check_tags(tiles, source)
    callbacks.info(f"{len(tiles)} tagged tiles of {tiles.tile_size} px: {tiles.counts_text}.")
    params = train_params(args)
    if not args.resume and (args.out / "checkpoint.pt").exists():
        raise KdmsiError(
            f"{args.out} already holds a training run; pass --resume or choose another --out."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    device = distributed.start(env, pick_device(args.device, callbacks.log))
    if env.is_distributed:
        callbacks.info(
            f"Rank {env.rank} of {env.world_size} on {device}; global batch {args.batch_size}."
        )
    refine = RefineParams(epochs=args.refine_epochs, seed=args.seed)
    result = train_model(
        tiles, params, bands, args.out, device, callbacks, args.val_fraction, args.resume,
        refine, env,
    )  # fmt: skip
    if env.is_main:
        _report(result, reporter)


def _report(result: TrainResult, reporter: Reporter) -> None:
    """The result event: the files written, the chosen epoch and map, and one sentence."""
    outputs = {
        "model": str(result.model_path),
        "run_dir": str(result.run_dir),
        "log": str(result.run_dir / "log.csv"),
        "plot": str(result.run_dir / "curves.png"),
    }
    reporter.result(
        outputs,
        {
            "selected_epoch": result.best_epoch,
            "val_auc": result.best_auc,
            "method": result.method,
            "reliable": result.reliable,
            "leader": result.leader,
        },
        f"Model written to {result.model_path}: "
        + (
            f"the last of {result.epochs} epochs (no tags were held out to choose one)."
            if result.best_auc != result.best_auc
            else f"epoch {result.best_epoch} of {result.epochs}, the one that ranked the "
            f"held-out tags best (AUC {result.best_auc:.3f})."
        ),
    )


def train_params(args: argparse.Namespace) -> TrainParams:
    """The training parameters the options describe."""
    from core.train.trainer import TrainParams

    return TrainParams(
        backbone=args.backbone,
        teacher_fusion=args.teacher_fusion,
        student_fusion=args.student_fusion,
        output_stride=args.output_stride,
        epochs=args.epochs,
        min_steps=args.min_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=not args.no_augment,
        seed=args.seed,
        weights=str(args.weights) if args.weights else None,
        frozen_stages=args.frozen_stages,
        freeze_bn=args.freeze_bn,
        precision=args.precision,
        affinity_rounds=args.affinity_rounds,
    )
