"""Benchmark 1: inference throughput of KD-MSI on CPU, public code path against a naive loop.

The public path is :func:`core.detect.pair.detect_with_model` (what ``kdmsi detect`` runs),
single scale and with MSI (scales 0.5, 1, 1.25, 2 with flips), in its default precision
(``auto``: bfloat16 autocast on CPUs with native bfloat16) and forced to float32. The naive
loop, written here, computes the same map the plain way in float32: one window at a time (no
batching), every scale reads its window from the files again, each flip is its own forward pass,
no channels-last, ``no_grad`` instead of ``inference_mode``, the whole output held in memory and
written at the end. All are timed in the same run, alternately, and the median of the repeats
is kept; throughput is megapixels of output (the raster's area) per second.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal

from core.detect.msi import MSI_SCALES, scaled_size
from core.detect.pair import detect_with_model
from core.detect.params import DetectParams
from core.detect.tiled import blend_weight
from core.io.geotiff import GeoTiffWriter
from core.io.rasters import RasterPair
from core.io.stretch import PairStretch, compute_stretch
from core.io.windows import Window, axis_starts
from core.models.model_file import load_model
from core.models.rebuild import build_network
from core.perf.inputs import PairPaths
from core.runtime.precision import autocast_dtype, describe

MODES = {"single": ((1.0,), False), "msi": (MSI_SCALES, True)}


@dataclass(frozen=True)
class NaiveTiling:
    """Windows of the naive loop: those ``detect`` picks for the student by default.

    The model's training tile, a quarter overlap, no margin.
    """

    window: int
    margin: int = 0

    @property
    def stride(self) -> int:
        """Step between window starts."""
        return self.window - self.window // 4


@dataclass
class ModeResult:
    """Timings of one mode (single scale or MSI) on one pair, per variant.

    Variants: ``public`` (``detect`` as it runs by default), ``fp32`` (torch in float32),
    ``onnx`` (``--engine onnx``, when onnxruntime is installed) and ``naive``.
    """

    seconds: dict[str, list[float]] = field(default_factory=dict)
    difference_to_fp32: dict[str, float] = field(default_factory=dict)

    def as_dict(self, megapixels: float) -> dict:
        """JSON-ready numbers: medians, throughputs and time ratios against float32 and naive."""
        medians = {name: median(times) for name, times in self.seconds.items()}
        result: dict = {"seconds": self.seconds}
        for name, value in medians.items():
            result[f"{name}_median_s"] = value
            result[f"{name}_mp_per_s"] = megapixels / value
            result[f"{name}_speedup_over_fp32"] = medians["fp32"] / value
            result[f"{name}_speedup_over_naive"] = medians["naive"] / value
        result["max_abs_difference_to_fp32"] = self.difference_to_fp32
        return result


def _read_grown(pair: RasterPair, window: Window, margin: int, stretch: PairStretch) -> tuple:
    """Stretched dates of ``window`` plus ``margin`` (reflected beyond the raster), and validity."""
    grid = pair.grid
    grown = Window(window.col - margin, window.row - margin, window.width + 2 * margin,
                   window.height + 2 * margin)  # fmt: skip
    inside = grown.intersection(Window(0, 0, grid.width, grid.height))
    data = pair.read(inside)
    pad = ((0, 0), (inside.row - grown.row, grown.row_end - inside.row_end),
           (inside.col - grown.col, grown.col_end - inside.col_end))  # fmt: skip
    a = np.pad(np.where(data.valid, stretch.before.apply(data.before), 0.0), pad, mode="reflect")
    b = np.pad(np.where(data.valid, stretch.after.apply(data.after), 0.0), pad, mode="reflect")
    valid = data.valid[window.relative_to(inside).slices]
    return torch.from_numpy(a[None]).float(), torch.from_numpy(b[None]).float(), valid


def _naive_window(student: torch.nn.Module, pair: RasterPair, window: Window, stretch: PairStretch,
                  modes: tuple, margin: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Probability of one window, each scale (and flip) on its own read and forward pass."""
    scales, flip = modes
    total, valid = None, None
    for scale in scales:
        a, b, valid = _read_grown(pair, window, margin, stretch)
        size = tuple(a.shape[-2:])
        small = scaled_size(size, scale)
        a_s = F.interpolate(a, size=small, mode="bilinear", align_corners=False)
        b_s = F.interpolate(b, size=small, mode="bilinear", align_corners=False)
        prob = torch.sigmoid(student(a_s, b_s))
        if flip:
            flipped = torch.sigmoid(student(a_s.flip(-1), b_s.flip(-1))).flip(-1)
            prob = 0.5 * (prob + flipped)
        prob = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)
        total = prob if total is None else total + prob
    prob = (total / len(scales))[0, 0].numpy()
    return prob[margin : margin + window.height, margin : margin + window.width], valid


def naive_detect(
    paths: PairPaths, model_path: Path, out: Path, mode: str, tiling: NaiveTiling
) -> None:
    """The naive per-window loop: same map as ``detect_with_model``, computed the plain way."""
    info, states = load_model(model_path)
    student = build_network(info, states, "student", model_path)
    with RasterPair.open(paths.before, paths.after, tuple(info.bands)) as pair:
        stretch = compute_stretch(pair)
        width, height = pair.grid.width, pair.grid.height
        total = np.zeros((height, width), np.float32)
        weights = np.zeros((height, width), np.float32)
        seen = np.zeros((height, width), bool)
        with torch.no_grad():
            for row in axis_starts(height, tiling.window, tiling.stride):
                for col in axis_starts(width, tiling.window, tiling.stride):
                    window = Window(col, row, min(tiling.window, width - col),
                                    min(tiling.window, height - row))  # fmt: skip
                    prob, valid = _naive_window(student, pair, window, stretch, MODES[mode],
                                                tiling.margin)  # fmt: skip
                    weight = blend_weight(window.height, window.width)
                    total[window.slices] += prob * weight
                    weights[window.slices] += weight
                    seen[window.slices] |= valid
        result = np.where(seen, total / np.maximum(weights, 1e-12), -1.0)
        with GeoTiffWriter(
            out, pair.grid, np.float32, nodata=-1.0, overwrite=True, overviews=False
        ) as writer:
            writer.write(Window(0, 0, width, height), result)


def _public_detect(paths: PairPaths, model: Path, out: Path, mode: str, variant: str) -> None:
    """``detect`` of ``model`` (a .pt or .onnx file) as ``variant`` names.

    ``fp32`` is torch in float32 (the baseline every ratio is taken against: ``--precision
    fp32`` alone would run onnxruntime where it is installed); the others use detect's defaults.
    """
    scales, flip = MODES[mode]
    fixed = {"precision": "fp32", "engine": "torch"} if variant == "fp32" else {}
    params = DetectParams("kdmsi", scales, flip, device="cpu", **fixed)
    detect_with_model(paths.before, paths.after, model, out, params, overwrite=True)


def _variants(model_path: Path, work: Path) -> dict[str, Path | None]:
    """The model each variant runs (None: the naive loop); ``onnx`` only with onnxruntime."""
    variants: dict[str, Path | None] = {"public": model_path, "fp32": model_path}
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        from core.detect.onnx import export_onnx

        variants["onnx"] = export_onnx(model_path, work / "student.onnx", overwrite=True)
    variants["naive"] = None
    return variants


def _difference(first: Path, second: Path) -> float:
    a = gdal.Open(str(first)).ReadAsArray()
    b = gdal.Open(str(second)).ReadAsArray()
    valid = (a >= 0) & (b >= 0)
    return float(np.abs(a - b)[valid].max()) if valid.any() else 0.0


def run_inference(paths: PairPaths, model_path: Path, work: Path, repeats: int) -> dict:
    """Time the public path (default precision, float32) and the naive loop, alternately.

    Single scale and MSI, ``repeats`` times each.

    Returns:
        Per mode the timings, medians, MP/s and speed-ups; the MSI/single cost ratio of both
        paths against the pixel-count predictions (6.8x for the scales, 13.6x with flips).
    """
    gdal.UseExceptions()
    info, _states = load_model(model_path)
    tiling = NaiveTiling(window=info.tile)
    with RasterPair.open(paths.before, paths.after, tuple(info.bands)) as pair:
        width, height = pair.grid.width, pair.grid.height
    megapixels = width * height / 1e6
    results: dict[str, ModeResult] = {}
    variants = _variants(model_path, work)
    for mode in MODES:
        result = results.setdefault(mode, ModeResult())
        outputs = {name: work / f"{name}-{mode}.tif" for name in variants}
        for _ in range(repeats):
            for name, model in variants.items():
                start = time.perf_counter()
                if model is None:
                    naive_detect(paths, model_path, outputs[name], mode, tiling)
                else:
                    _public_detect(paths, model, outputs[name], mode, name)
                result.seconds.setdefault(name, []).append(time.perf_counter() - start)
        result.difference_to_fp32 = {
            name: _difference(out, outputs["fp32"])
            for name, out in outputs.items()
            if name != "fp32"
        }
    modes = {mode: results[mode].as_dict(megapixels) for mode in MODES}
    pixel_ratio = sum(s * s for s in MSI_SCALES)
    return {
        "width": width,
        "height": height,
        "megapixels": megapixels,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "precision": describe(autocast_dtype("auto", torch.device("cpu"))),
        "naive_window": tiling.window,
        "naive_overlap": tiling.window - tiling.stride,
        "naive_margin": tiling.margin,
        "modes": modes,
        "variants": list(variants),
        "msi_over_single_public": modes["msi"]["public_median_s"]
        / modes["single"]["public_median_s"],
        "msi_over_single_naive": modes["msi"]["naive_median_s"] / modes["single"]["naive_median_s"],
        "predicted_msi_over_single_scales": pixel_ratio,
        "predicted_msi_over_single_with_flips": 2 * pixel_ratio,
    }
