"""Benchmark 5: the arithmetic bound of inference on this machine.

FLOPs of the student (``torch.utils.flop_counter.FlopCounterMode``, which counts the
convolutions and matrix products, two FLOPs per multiply-add) for one window at each MSI scale,
per megapixel of the window, the machine's measured peak (the best of several large float32
matrix products on all the threads torch uses), and the fraction of that peak a measured
throughput reaches. Resizing, sigmoid, blending and reading are not counted, and the tiling's
overlap and margin recompute pixels, so the fraction is a lower bound on how well the
convolutions themselves use the machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from core.detect.msi import MSI_SCALES, scaled_size
from core.models.model_file import load_model
from core.models.rebuild import build_network
from core.runtime.precision import autocast_dtype, describe


def student_flops(model_path: Path, window: int) -> dict[str, float]:
    """FLOPs of one student forward pass on a ``window`` px pair at each MSI scale.

    Returns:
        Scale (as text) -> FLOPs per megapixel of the window at that scale's cost (the scaled
        input's FLOPs divided by the window's unscaled megapixels).
    """
    info, states = load_model(model_path)
    student = build_network(info, states, "student", model_path)
    result = {}
    for scale in MSI_SCALES:
        rows, cols = scaled_size((window, window), scale)
        a = torch.rand(1, info.in_channels, rows, cols)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            student(a, a)
        result[f"{scale:g}"] = counter.get_total_flops() / (window * window / 1e6)
    return result


def peak_gflops(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best matrix product throughput in GFLOP/s (``2 size^3`` FLOPs per product)."""
    a, b = torch.rand(size, size).to(dtype), torch.rand(size, size).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def run_flops(
    model_path: Path, window: int, inference: dict | None, matmul_size: int = 2048
) -> dict:
    """FLOPs per megapixel, the machine's peak and the fraction of it reached by ``inference``.

    Args:
        model_path: the benchmark's model file.
        window: window edge used for counting (the window ``detect`` uses by default).
        inference: the result of :func:`core.perf.inference.run_inference`, or None.
        matmul_size: edge of the matrices that measure the peak.
    """
    per_scale = student_flops(model_path, window)
    single = per_scale["1"]
    msi = 2 * sum(per_scale.values())  # every scale runs on the image and its flip
    peak = peak_gflops(matmul_size)
    fast = autocast_dtype("auto", torch.device("cpu"))
    peak_fast = peak_gflops(matmul_size, dtype=fast) if fast is not None else peak
    result = {
        "window": window,
        "threads": torch.get_num_threads(),
        "flops_per_mp_by_scale": per_scale,
        "gflop_per_mp_single": single / 1e9,
        "gflop_per_mp_msi_with_flips": msi / 1e9,
        "flop_ratio_msi_over_single": msi / single,
        "peak_gflops_matmul": peak,
        "precision": describe(fast),
        "peak_gflops_matmul_precision": peak_fast,
        "matmul_size": matmul_size,
    }
    if inference:
        for mode, flops in (("single", single), ("msi", msi)):
            for variant, top, key in (("public", peak_fast, mode), ("fp32", peak, f"{mode}_fp32")):
                rate = inference["modes"][mode][f"{variant}_mp_per_s"]
                result[f"{key}_achieved_gflops"] = rate * flops / 1e9
                result[f"{key}_fraction_of_peak"] = rate * flops / 1e9 / top
                result[f"{key}_bound_mp_per_s"] = top * 1e9 / flops
    return result
