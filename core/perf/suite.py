"""The whole ``kdmsi perf`` run: sizes (full or quick), order, JSON and BENCHMARKS.md section.

The full run is sized to finish in under 20 minutes on two idle CPU cores, including generating
its inputs the first time (about 1.5 GB for the 16,000 px pair, reused afterwards). The quick run
uses tiny inputs and exists to test the harness end to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.callbacks import Callbacks
from core.perf.memory import MemoryCase
from core.perf.training import TrainCase

BENCHMARKS = ("inference", "memory", "vectorization", "training", "flops")


@dataclass(frozen=True)
class PerfConfig:
    """Sizes of one run.

    Attributes:
        inference_px: edge of the pair timed for throughput.
        repeats: repeats of every timed measurement (the median is reported).
        memory: the detect runs of the memory benchmark.
        overview_sizes: edges of the probability outputs whose overview build the memory
            benchmark times.
        mask_px: edge of the mask vectorized (dense change).
        sparse_px: edge of the sparse-change probability vectorized.
        sparse_blobs: number of change polygons in it.
        dataset_pairs: generated 512 px pairs in the training dataset (``dataset_px`` quick).
        dataset_px: edge of each training pair.
        training: the training runs.
        model_tile: training tile recorded in the model file (``detect``'s window).
        flops_window: window edge whose FLOPs are counted (0: the window ``detect`` uses).
        matmul_size: edge of the matrices that measure the machine's peak.
        only: the benchmarks to run.
    """

    inference_px: int = 1024
    repeats: int = 3
    memory: tuple[MemoryCase, ...] = (
        MemoryCase(2000, "kdmsi"), MemoryCase(8000, "kdmsi"),
        MemoryCase(16000, "kdmsi", 420.0), MemoryCase(2000, "cva"), MemoryCase(8000, "cva"),
        MemoryCase(16000, "cva"),
    )  # fmt: skip
    overview_sizes: tuple[int, ...] = (8000, 16000)
    mask_px: int = 4000
    sparse_px: int = 8000
    sparse_blobs: int = 130
    dataset_pairs: int = 24
    dataset_px: int = 512
    training: tuple[TrainCase, ...] = (
        TrainCase(256, 8, "fp32"), TrainCase(256, 8), TrainCase(128, 8, "fp32"), TrainCase(128, 8)
    )  # fmt: skip
    model_tile: int = 128
    flops_window: int = 0
    matmul_size: int = 2048
    only: tuple[str, ...] = field(default=BENCHMARKS)

    @classmethod
    def quick(cls, only: tuple[str, ...] = BENCHMARKS) -> PerfConfig:
        """Tiny sizes: the whole harness in well under a minute."""
        return cls(
            inference_px=64, repeats=1,
            memory=(MemoryCase(96, "kdmsi"), MemoryCase(128, "kdmsi", 60.0), MemoryCase(96, "cva")),
            overview_sizes=(600,),
            mask_px=200, sparse_px=320, sparse_blobs=5,
            dataset_pairs=2, dataset_px=128, training=(TrainCase(64, 4),),
            model_tile=64, flops_window=64, matmul_size=256, only=only,
        )  # fmt: skip


def run_perf(
    config: PerfConfig, work: Path, command: str, callbacks: Callbacks | None = None
) -> dict:
    """Generate the inputs under ``work`` and run the chosen benchmarks; return the results."""
    from core.perf import inputs
    from core.perf.report import machine

    callbacks = callbacks or Callbacks()
    start = time.perf_counter()
    results: dict = {
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "config": {"quick": config.inference_px < 256, "only": list(config.only)},
        "notes": [],
    }
    model = inputs.make_model(work, config.model_tile)
    steps = [name for name in BENCHMARKS if name in config.only]
    for index, name in enumerate(steps):
        callbacks.progress(index / len(steps), f"benchmark {name}")
        step_start = time.perf_counter()
        results[name] = _run_one(name, config, work, model, results)
        results[name]["benchmark_wall_s"] = time.perf_counter() - step_start
        callbacks.info(f"{name}: {results[name]['benchmark_wall_s']:.0f} s")
    results["wall_s"] = time.perf_counter() - start
    callbacks.progress(1.0, "done")
    return results


def _run_one(name: str, config: PerfConfig, work: Path, model: Path, results: dict) -> dict:
    from core.perf import inputs

    if name == "inference":
        from core.perf.inference import run_inference

        pair = inputs.make_pair(work, config.inference_px)
        return run_inference(pair, model, work, config.repeats)
    if name == "memory":
        from core.perf.memory import run_memory
        from core.perf.overviews import run_overviews

        pairs = {size: inputs.make_pair(work, size) for size in {c.size for c in config.memory}}
        memory = run_memory(pairs, model, work, list(config.memory))
        memory["overviews"] = run_overviews(work, list(config.overview_sizes))
        return memory
    if name == "vectorization":
        from core.perf.vectorization import run_vectorization

        mask = inputs.make_mask(work, config.mask_px)
        sparse = (config.sparse_px, config.sparse_blobs)
        return run_vectorization(mask, work, config.repeats, sparse)
    if name == "training":
        from core.perf.training import run_training

        dataset = inputs.make_dataset(work, config.dataset_pairs, config.dataset_px)
        return run_training(dataset, work, list(config.training))
    from core.perf.flops import run_flops

    window = config.flops_window or config.model_tile
    return run_flops(model, window, results.get("inference"), config.matmul_size)
