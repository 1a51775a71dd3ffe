"""Detection under ``torchrun``: every rank computes a band of rows, rank 0 writes the GeoTIFF.

``torchrun --nproc_per_node N -m core detect ...`` (one node, several nodes or SLURM; see
docs/distributed.md) starts N copies of the command. Each joins the process group
(:mod:`core.runtime.distributed`: NCCL with one GPU per rank, gloo on CPUs) and takes one band of
output rows, cut exactly as ``--workers`` cuts them (:func:`core.detect.parallel.row_bands`): it
computes every window that covers a row of its band, so the blend, and therefore the map, is the
one a single process writes. Rank 0 computes the pair's stretch and sends it to all, so every rank
sees the same inputs.

The bands go to ``.npy`` blocks in a folder beside the output (on several machines it must be a
shared file system, as the output folder of a cluster job is). When every rank is done, rank 0
copies the blocks into one GeoTIFF written under a temporary name and renamed when complete, then
removes the folder. A rank that fails or is canceled stops: torchrun then stops the others, and no
output that looks complete is left.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from core.callbacks import Callbacks
from core.detect.loading import check_bands, detect_metadata, load_predictor
from core.detect.parallel import BlockSink, assemble_blocks, row_bands
from core.detect.params import DetectParams
from core.detect.tiled import predict_rows
from core.errors import KdmsiError
from core.io.geotiff import check_output, geotiff_bytes
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch, compute_stretch
from core.runtime import distributed
from core.runtime.devices import pick_device


def blocks_folder(out: Path) -> Path:
    """The folder, beside ``out``, where the ranks leave their bands."""
    return Path(out).with_name(f".{Path(out).name}.kdmsi-ranks")


def detect_on_ranks(
    before: Path,
    after: Path,
    model_path: Path,
    out: Path,
    params: DetectParams,
    env: distributed.DistEnv,
    bands: tuple[int, ...] | None = None,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> float:
    """This rank's share of :func:`core.detect.pair.detect_with_model` under ``torchrun``.

    Every rank calls it with the same arguments; rank 0 writes ``out``.

    Returns:
        The threshold to use with the result.

    Raises:
        KdmsiError: bad inputs (as with one process), or another rank that failed.
    """
    callbacks = callbacks or Callbacks()
    out = Path(out)
    device = distributed.start(env, pick_device(params.device, callbacks.log))
    folder = blocks_folder(out)
    with tempfile.TemporaryDirectory(prefix="kdmsi-onnx-") as scratch:
        info, predictor, engine = load_predictor(model_path, params, device, Path(scratch))
        bands = check_bands(info, bands, model_path)
        with RasterPair.open(before, after, bands, callbacks) as pair:
            if env.is_main:
                check_output(out, overwrite, geotiff_bytes(pair.grid))
                folder.mkdir(parents=True, exist_ok=True)
            stretch = distributed.broadcast(
                compute_stretch(pair).to_dict() if env.is_main else None
            )
            tiling = params.tiling(info.tile)
            split = row_bands(pair.grid.height, tiling, env.world_size)
            _wait_for_folder(folder)
            if env.rank < len(split):
                band = split[env.rank]
                callbacks.info(
                    f"Rank {env.rank} of {env.world_size} on {device}: rows {band.start} to "
                    f"{band.stop - 1} of {pair.grid.height}."
                )
                sink = BlockSink(folder / f"band{env.rank}.npy", split[env.rank], pair.grid.width)
                stretch = PairStretch.from_dict(stretch)
                predict_rows(pair, predictor, stretch, sink, tiling, device, callbacks, sink.band)
                sink.rows.flush()
            # every rank's band is on disk; no folder check here: rank 0 may already remove it
            distributed.any_rank(False)
            if env.is_main:
                metadata = detect_metadata(info, params, model_path, engine, device)
                parts = [(band, folder / f"band{i}.npy") for i, band in enumerate(split)]
                try:
                    assemble_blocks(pair, parts, out, metadata, overwrite)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
    return info.threshold_for(params.method, params.scales)


def _wait_for_folder(folder: Path) -> None:
    """A barrier of all ranks, then check that rank 0's folder is visible here."""
    distributed.any_rank(False)
    if not folder.is_dir():
        raise KdmsiError(
            f"The folder {folder} that rank 0 made is not visible to this rank; run every rank "
            "with an output folder on a file system they share."
        )
