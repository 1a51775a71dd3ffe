"""Tiled detection over very large pairs split across worker processes.

The raster is cut into bands of output rows, one per worker, at the starts of rows of windows.
Each worker computes every window that covers a row of its band (so the rows of windows that
straddle a boundary are computed by both neighbours) and blends them exactly as a single run
would, then writes only its band's rows into its own raw block file (a ``.npy`` memory map: GeoTIFF
is not safe for concurrent writers). The parent relays progress and cancel, and when all workers
are done it copies the blocks, in order, into one tiled GeoTIFF written under a temporary name and
renamed when complete. The blocks live in a temporary folder beside the output and are removed.

The pair's stretch is computed once by the parent and given to every worker, and a ``.pt`` model
run with the ONNX engine is exported once, so every band sees the same inputs and network.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.callbacks import Callbacks
from core.detect.loading import check_bands, detect_metadata, load_predictor, onnx_file
from core.detect.params import DetectParams
from core.detect.tiled import NODATA, RowBand, TilingParams, axis_plan, predict_rows
from core.errors import KdmsiError
from core.io.geotiff import GeoTiffWriter, check_output, geotiff_bytes
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch, compute_stretch
from core.io.windows import Window
from core.runtime.devices import pick_device

COPY_ROWS = 256


@dataclass(frozen=True)
class BandJob:
    """What one worker computes.

    Attributes:
        index: the worker's number.
        before: path of A.
        after: path of B.
        bands: bands read from both.
        model: the model file (``.pt``) or ONNX export.
        params: the detection parameters (a :class:`core.detect.params.DetectParams`).
        stretch: the pair's normalisation, as :meth:`PairStretch.to_dict` gives it.
        band: output rows of this worker.
        block: the ``.npy`` file its rows go to.
        threads: torch and onnxruntime threads of this worker.
    """

    index: int
    before: Path
    after: Path
    bands: tuple[int, ...]
    model: Path
    params: DetectParams
    stretch: dict
    band: RowBand
    block: Path
    threads: int


class BlockSink:
    """Writes rows of a band into a ``.npy`` memory map (row 0 of the file = the band's start)."""

    def __init__(self, path: Path, band: RowBand, width: int) -> None:
        shape = (band.stop - band.start, width)
        self.rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        self.band = band
        self.start = band.start

    def write(self, window: Window, array: np.ndarray) -> None:
        """Store the finished rows of ``window`` (its rows lie inside the band)."""
        top = window.row - self.start
        self.rows[top : top + window.height, window.col : window.col_end] = array


def row_bands(height: int, tiling: TilingParams, workers: int) -> list[RowBand]:
    """Split ``height`` rows into at most ``workers`` bands at starts of rows of windows.

    Each band holds about the same number of rows of windows.
    """
    _, starts = axis_plan(height, tiling.window, tiling.overlap, tiling.align, 2 * tiling.margin)
    count = max(1, min(workers, len(starts)))
    cuts = [starts[round(i * len(starts) / count)] for i in range(1, count)]
    edges = [0, *cuts, height]
    return [RowBand(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _run_band(job: BandJob, messages: mp.Queue) -> None:
    """Worker body: predict one band into its block file, reporting progress and errors."""
    torch.set_num_threads(job.threads)
    try:
        device = pick_device(job.params.device)
        with tempfile.TemporaryDirectory(prefix="kdmsi-onnx-") as scratch:
            info, predictor, _engine = load_predictor(
                job.model, job.params, device, Path(scratch), job.threads
            )
            tiling = job.params.tiling(info.tile)
            stretch = PairStretch.from_dict(job.stretch)

            def progress(fraction: float, message: str) -> None:
                messages.put(("progress", job.index, fraction))

            with RasterPair.open(job.before, job.after, job.bands) as pair:
                sink = BlockSink(job.block, job.band, pair.grid.width)
                callbacks = Callbacks(progress=progress)
                predict_rows(pair, predictor, stretch, sink, tiling, device, callbacks, job.band)
                sink.rows.flush()
        messages.put(("done", job.index, 1.0))
    except Exception as exc:  # reported to the parent, which raises it
        messages.put(("error", job.index, f"{type(exc).__name__}: {exc}"))


def _wait(workers: list, messages: mp.Queue, callbacks: Callbacks) -> None:
    """Relay progress until every worker is done; stop them all on cancel or on an error."""
    fractions, done = [0.0] * len(workers), set()
    try:
        while len(done) < len(workers):
            callbacks.check_canceled()
            try:
                kind, index, value = messages.get(timeout=0.2)
            except queue.Empty:
                dead = [i for i, w in enumerate(workers) if w.exitcode not in (None, 0)]
                if dead and not set(dead) <= done:
                    raise KdmsiError(
                        f"Detection worker {dead[0]} stopped (exit status "
                        f"{workers[dead[0]].exitcode}), probably out of memory; use fewer "
                        "--workers or a smaller --window."
                    ) from None
                continue
            if kind == "error":
                raise KdmsiError(f"Detection worker {index} failed: {value}")
            fractions[index] = value
            if kind == "done":
                done.add(index)
            callbacks.progress(sum(fractions) / len(fractions), f"{len(done)} bands done")
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def assemble_blocks(
    pair: RasterPair, parts: list[tuple[RowBand, Path]], out: Path, metadata: dict, overwrite: bool
) -> None:
    """Copy the bands' blocks, in order, into one GeoTIFF (temporary name, renamed when complete).

    Args:
        pair: the open pair (its grid is the output's).
        parts: each band of rows and the ``.npy`` block holding it.
        out: the probability GeoTIFF.
        metadata: its metadata items.
        overwrite: replace an existing ``out``.
    """
    with GeoTiffWriter(out, pair.grid, np.float32, nodata=NODATA, overwrite=overwrite) as writer:
        writer.set_description(1, "change probability")
        writer.set_metadata(metadata)
        for band, block in parts:
            rows = np.load(block, mmap_mode="r")
            for top in range(0, rows.shape[0], COPY_ROWS):
                part = np.asarray(rows[top : top + COPY_ROWS])
                writer.write(Window(0, band.start + top, part.shape[1], part.shape[0]), part)
            del rows


def detect_in_parallel(
    before: Path,
    after: Path,
    model_path: Path,
    out: Path,
    params: DetectParams,
    bands: tuple[int, ...] | None = None,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> float:
    """:func:`core.detect.pair.detect_with_model` with ``params.workers`` processes.

    Returns:
        The threshold to use with the result.

    Raises:
        KdmsiError: bad inputs (as with one process), or a worker that failed.
    """
    callbacks = callbacks or Callbacks()
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=".kdmsi-blocks-", dir=out.parent) as folder:
        scratch = Path(folder)
        info, _, engine = load_predictor(model_path, params, torch.device("cpu"), scratch)
        model = onnx_file(Path(model_path), scratch) if engine == "onnx" else model_path
        bands = check_bands(info, bands, model_path)
        with RasterPair.open(before, after, bands, callbacks) as pair:
            check_output(out, overwrite, geotiff_bytes(pair.grid))
            stretch = compute_stretch(pair).to_dict()
            tiling = params.tiling(info.tile)
            split = row_bands(pair.grid.height, tiling, params.workers)
            threads = max(1, (os.cpu_count() or 1) // len(split))
            callbacks.info(f"Detecting in {len(split)} bands of rows, {threads} thread(s) each.")
            jobs = [
                BandJob(i, Path(before), Path(after), bands, Path(model), params, stretch,
                        band, scratch / f"band{i}.npy", threads)
                for i, band in enumerate(split)
            ]  # fmt: skip
            context = mp.get_context("spawn")
            messages = context.Queue()
            workers = [context.Process(target=_run_band, args=(j, messages)) for j in jobs]
            for worker in workers:
                worker.start()
            _wait(workers, messages, callbacks)
            device = pick_device(params.device)
            metadata = detect_metadata(info, params, model_path, engine, device)
            parts = [(job.band, job.block) for job in jobs]
            assemble_blocks(pair, parts, out, metadata, overwrite)
    return info.threshold_for(params.method, params.scales)
