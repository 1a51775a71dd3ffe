"""The benchmark's second view: the test tiles scored on maps that ``kdmsi detect`` writes.

The main table predicts every test tile on its own (the prototype's protocol). Users run
``detect`` on whole rasters instead: sliding windows with overlap and blending over the whole
pair. Here each pair of the dataset folders goes through that same function
(:func:`core.detect.pair.detect_with_model`, with its default tiling), the GeoTIFF it writes
is read back, the test tiles are cut out of it and scored at the threshold ``detect`` reports.
The product's row scores what its polygons cover: the regions ``vectorize`` leaves out are
cleared first.
The maps see the imagery around a test tile (never a label), as they do for a user.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.callbacks import Callbacks
from core.choices import DEFAULTS
from core.data.datasets import find_pairs
from core.detect.pair import detect_with_model
from core.detect.params import DetectParams, resolve_method
from core.eval.benchmark_data import BenchmarkData
from core.io.rasters import open_raster
from core.models.model_file import load_model
from core.vector.components import strong_regions
from core.vector.vectorize import VectorizeParams

# Row name -> (detect method, scales) of the whole-pair rows.
WHOLE_PAIR_METHODS: dict[str, tuple[str, tuple[float, ...] | None]] = {
    "KD-MSI + MSI, detect on whole pairs": ("kdmsi", None),
    "KD-MSI + MSI + CVA, detect on whole pairs": ("kdmsi-cva", None),
    "KD-MSI refined, detect on whole pairs": ("kdmsi-refined", (1.0,)),
}

Maps = dict[str, np.ndarray]  # whole-pair maps keyed by pair key

PRODUCT_ROW = "Product: detect --method auto (the map chosen on held-out tags)"


def tiles_from_maps(data: BenchmarkData, maps: dict[str, np.ndarray]) -> np.ndarray:
    """Cut every tile of ``data`` out of whole-pair maps keyed by pair key (``dataset/name``).

    Returns:
        float32 ``[N, T, T]``; pixels beyond a pair's edge (padding of edge tiles) are 0.
    """
    size = data.tiles.tile_size
    out = np.zeros((len(data.tiles), size, size), dtype=np.float32)
    for i, (name, w) in enumerate(zip(data.tiles.names, data.tiles.windows)):
        whole = maps[name.split("#")[0]]
        out[i, : w.height, : w.width] = whole[w.row : w.row_end, w.col : w.col_end]
    return out


def read_map(path: Path) -> np.ndarray:
    """Band 1 of a probability GeoTIFF as float32."""
    ds = open_raster(path, "probability map")  # keep the dataset alive while its band is read
    return ds.GetRasterBand(1).ReadAsArray().astype(np.float32)


def detect_whole_pairs(
    roots: list[Path],
    model_path: Path,
    params: DetectParams,
    bands: tuple[int, ...] | None,
    out_dir: Path,
    callbacks: Callbacks,
) -> tuple[dict[str, np.ndarray], float]:
    """Run ``detect`` on every pair of the dataset folders.

    Returns:
        The maps keyed by pair key and the threshold ``detect`` reports for them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    maps, threshold = {}, 0.5
    for root in roots:
        for files in find_pairs(root):
            callbacks.check_canceled()
            out = out_dir / f"{root.name}_{files.name}_{params.method}.tif"
            threshold = detect_with_model(
                files.before, files.after, model_path, out, params, bands, callbacks, True
            )
            maps[files.key] = read_map(out)
    return maps, threshold


def whole_pair_predictions(
    roots: list[Path],
    model_path: Path,
    data: BenchmarkData,
    base: DetectParams,
    bands: tuple[int, ...] | None,
    out_dir: Path,
    callbacks: Callbacks,
) -> list[tuple[str, np.ndarray, float, float]]:
    """``(row name, test-tile probabilities, threshold, seconds)`` of each whole-pair method.

    ``base`` gives device, precision and MSI scales; the refined row is left out when the model
    holds no refinement network. The last row is the product's, ``detect --method auto``: the map
    of the method it resolves to (the row above, or a run of its own for the teacher's CAM or
    CVA) with the regions its polygons leave out set to 0 (:func:`polygon_map`).
    """

    def run(name: str, params: DetectParams, method: str) -> tuple[str, Maps, float, float]:
        start = time.perf_counter()
        maps, threshold = detect_whole_pairs(
            roots, model_path, params, bands, out_dir / method, callbacks
        )
        return name, maps, threshold, time.perf_counter() - start

    has_refined = bool(load_model(model_path)[0].refined_output_stride)
    rows, by_method = [], {}
    for name, (method, scales) in WHOLE_PAIR_METHODS.items():
        if method == "kdmsi-refined" and not has_refined:
            continue
        rows.append(run(name, replace(base, method=method, scales=scales or base.scales), method))
        by_method[method] = rows[-1]
    chosen = resolve_method("auto", model_path)
    _, maps, threshold, seconds = by_method.get(chosen) or run(
        PRODUCT_ROW, replace(base, method="auto"), chosen
    )
    product = {key: polygon_map(values, threshold) for key, values in maps.items()}
    rows.append((PRODUCT_ROW, product, threshold, seconds))
    return [(name, tiles_from_maps(data, maps)[data.test], t, s) for name, maps, t, s in rows]


def polygon_map(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values`` with the change regions that ``kdmsi vectorize`` leaves out by default set to 0.

    Those are the regions of ``values >= threshold`` whose strongest pixel stays under the
    default peak ratio times the threshold (:attr:`VectorizeParams.peak_cut`), so the map cut at
    ``threshold`` is what the polygons cover (before the smallest-polygon rule).
    """
    peak = VectorizeParams(threshold, peak_ratio=DEFAULTS.peak_ratio).peak_cut
    weak = (values >= threshold) & ~strong_regions(values, threshold, peak)
    return np.where(weak, 0.0, values).astype(np.float32)
