"""Change detection with a trained model over a whole pair (the learned methods of ``detect``).

Engines: ``torch`` runs the networks of a ``.pt`` model file; ``onnx`` runs the student exported
by ``kdmsi export`` with onnxruntime (``kdmsi`` method only, on the CPU; a ``.pt`` file is exported
to a temporary ONNX file first); ``auto`` picks ``onnx`` for a ``.onnx`` model and ``torch``
otherwise. ``workers > 1`` splits the raster into bands of rows computed by separate processes
(:mod:`core.parallel_detect`); the result is the same as with one.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from core.callbacks import Callbacks
from core.devices import pick_device
from core.errors import KdmsiError
from core.inference import Predictor, TilingParams, predict_pair
from core.modelfile import ModelInfo, load_model
from core.msi import MAX_PIXELS
from core.normalize import compute_stretch
from core.precision import autocast_dtype, describe
from core.rasters import RasterPair

ENGINES = ("auto", "torch", "onnx")
# Context read around each window of the refinement network, in training tiles (a quarter of
# one); the student and teacher get none (see ``DetectParams.window``).
REFINED_MARGIN = 0.25


@dataclass(frozen=True)
class DetectParams:
    """What to run: the method, MSI scales, flips, device and tiling.

    Attributes:
        method: ``auto``, ``kdmsi``, ``cam`` or ``kdmsi-refined``; ``auto`` runs the refined
            network when the model file holds one (trained only on request, ``kdmsi train
            --refine-epochs``), else ``kdmsi``.
        scales: MSI scales (``(1.0,)`` for single scale).
        flip: also average horizontal flips (the published MSI does).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: windows read and predicted together.
        window: largest window edge; 0 (default) means the model's training tile. The networks
            were trained on tiles of that size and their maps depend on it: the student learns
            the teacher's CAM normalised per tile, and the refinement network's dilated and
            pooled branches see a tile's worth of map. On larger windows both drift (pooled
            LEVIR + WHU, seed 0, 128 px tiles: MSI F1 0.26 and refined 0.30 with 512 and
            768 px windows against 0.45 and 0.46 with 128 px windows; BENCHMARKS.md).
        overlap: least overlap of neighbouring windows; -1 means a quarter of the window.
        engine: ``auto``, ``torch`` or ``onnx`` (see the module's description).
        workers: processes sharing the raster by bands of rows (1: this process only).
        max_pixels: pixels per date of one forward pass (bounds memory, not the result).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:mod:`core.precision`; torch
            engine only).
    """

    method: str = "auto"
    scales: tuple[float, ...] = (0.5, 1.0, 1.25, 2.0)
    flip: bool = True
    device: str = "auto"
    batch_size: int = 4
    window: int = 0
    overlap: int = -1
    engine: str = "auto"
    workers: int = 1
    max_pixels: int = MAX_PIXELS
    precision: str = "auto"

    def tiling(self, tile: int) -> TilingParams:
        """The tiling for a model trained on ``tile`` px tiles.

        Windows are the training tile unless ``window`` says otherwise; the student and the
        teacher see each window alone (a margin of context changes their per-tile maps), the
        refinement network a quarter of a tile of context around it. Network inputs are grown
        to multiples of 16 px (64 with MSI, so that every scale stays one), as the ONNX export
        needs; both engines use the same windows, so their maps agree.
        """
        window = self.window or tile
        overlap = self.overlap if self.overlap >= 0 else window // 4
        margin = round(REFINED_MARGIN * tile) if self.method == "kdmsi-refined" else 0
        multiscale = len(self.scales) > 1 or max(self.scales) != 1.0
        align = 64 if self.method == "kdmsi" and multiscale else 16
        return TilingParams(window, overlap, self.batch_size, margin, align)


def resolve_method(method: str, model_path: Path) -> str:
    """The method ``auto`` stands for: ``kdmsi-refined`` when the model holds that network.

    An ONNX export holds the student alone, so ``auto`` means ``kdmsi`` there.
    """
    if method != "auto":
        return method
    if Path(model_path).suffix.lower() == ".onnx":
        return "kdmsi"
    info, _states = load_model(model_path)
    return "kdmsi-refined" if info.refined_output_stride else "kdmsi"


def resolve_engine(engine: str, model_path: Path, method: str) -> str:
    """``torch`` or ``onnx`` for the requested engine, model file and method.

    Raises:
        KdmsiError: an unknown engine, a torch engine for an ONNX file, or ONNX for a method
            other than ``kdmsi``.
    """
    if engine not in ENGINES:
        raise KdmsiError(f"--engine {engine} is unknown; use {', '.join(ENGINES)}.")
    is_onnx = Path(model_path).suffix.lower() == ".onnx"
    chosen = engine if engine != "auto" else ("onnx" if is_onnx else "torch")
    if chosen == "torch" and is_onnx:
        raise KdmsiError(
            f"The model {model_path} is an ONNX file, which the torch engine cannot run; "
            "use --engine onnx or give the .pt model file."
        )
    if chosen == "onnx" and method != "kdmsi":
        raise KdmsiError(
            f"The ONNX engine runs only --method kdmsi, not {method}; use --engine torch "
            "with the .pt model file."
        )
    return chosen


def load_predictor(
    model_path: Path, params: DetectParams, device: torch.device, scratch: Path, threads: int = 0
) -> tuple[ModelInfo, Predictor, str]:
    """The model's description, its predictor for ``params`` and the engine that runs it.

    Args:
        model_path: a ``.pt`` model file or a ``.onnx`` export.
        params: method, scales, engine...
        device: where a torch network runs.
        scratch: a folder for the temporary ONNX export of a ``.pt`` file.
        threads: onnxruntime threads (0: its default, all cores).
    """
    from core import predictors

    engine = resolve_engine(params.engine, model_path, params.method)
    if engine == "torch":
        info, states = load_model(model_path)
        predictor = predictors.make_predictor(
            params.method, info, states, Path(model_path), device, params.scales, params.flip,
            params.max_pixels, autocast_dtype(params.precision, device),
        )  # fmt: skip
        return info, predictor, engine
    from core.onnx_export import OnnxStudent, export_onnx

    onnx_path = Path(model_path)
    if onnx_path.suffix.lower() != ".onnx":
        onnx_path = export_onnx(model_path, scratch / "student.onnx")
    student = OnnxStudent(onnx_path, threads)
    predictor = predictors.onnx_predictor(student, params.scales, params.flip, params.max_pixels)
    return student.info, predictor, engine


def detect_with_model(
    before: Path,
    after: Path,
    model_path: Path,
    out: Path,
    params: DetectParams,
    bands: tuple[int, ...] | None = None,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> float:
    """Write the change probability of a pair with a trained model; return the threshold to use.

    The pair is read with the model's bands unless ``bands`` is given, and is stretched with its
    own percentiles, as the training pairs were.

    Raises:
        KdmsiError: when the bands do not match the model's.
    """
    callbacks = callbacks or Callbacks()
    if params.method == "auto":
        params = replace(params, method=resolve_method(params.method, model_path))
        callbacks.info(f"Method auto: {params.method} (what the model file {model_path} offers).")
    if params.workers > 1:
        from core.parallel_detect import detect_in_parallel

        return detect_in_parallel(
            before, after, model_path, out, params, bands, callbacks, overwrite
        )
    device = pick_device(params.device, callbacks.log)
    with tempfile.TemporaryDirectory(prefix="kdmsi-onnx-") as scratch:
        info, predictor, engine = load_predictor(model_path, params, device, Path(scratch))
        bands = check_bands(info, bands, model_path)
        metadata = detect_metadata(info, params, model_path, engine, device)
        callbacks.info(f"Running {params.method} with {engine} in {metadata['kdmsi_precision']}.")
        tiling = params.tiling(info.tile)
        with RasterPair.open(before, after, bands, callbacks) as pair:
            stretch = compute_stretch(pair)
            predict_pair(
                pair, predictor, stretch, out, tiling, device, metadata, callbacks, overwrite
            )
    return info.threshold_for(params.method, params.scales)


def check_bands(info: ModelInfo, bands: tuple[int, ...] | None, model_path: Path) -> tuple:
    """The bands to read: the model's unless given; their count must match the model's.

    Raises:
        KdmsiError: when the count differs.
    """
    bands = bands or tuple(info.bands)
    if len(bands) != info.in_channels:
        raise KdmsiError(
            f"The model {model_path} was trained on {info.in_channels} band(s) {info.bands} but "
            f"{len(bands)} were given; pass --bands with {info.in_channels} bands."
        )
    return tuple(bands)


def detect_metadata(
    info: ModelInfo, params: DetectParams, model_path: Path, engine: str, device: torch.device
) -> dict[str, str]:
    """The items stored in the probability GeoTIFF (method, network, threshold, scales...)."""
    dtype = autocast_dtype(params.precision, device) if engine == "torch" else None
    precision = describe(dtype)
    network = {"kdmsi": "student", "cam": "teacher", "kdmsi-refined": "refined"}.get(
        params.method, ""
    )
    return {
        "kdmsi_method": params.method,
        "kdmsi_network": network,
        "kdmsi_threshold": str(info.threshold_for(params.method, params.scales)),
        "kdmsi_scales": ",".join(f"{s:g}" for s in params.scales),
        "kdmsi_flip": str(bool(params.flip)).lower(),
        "kdmsi_engine": engine,
        "kdmsi_precision": precision,
        "kdmsi_model": str(Path(model_path).resolve()),
    }
