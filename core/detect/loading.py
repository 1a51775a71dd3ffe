"""A model file's predictor for detection, the bands it reads and the metadata it writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.detect import predictors
from core.detect.flat_field import centre_to_ring, flattened
from core.detect.fusion import fused_predictor
from core.detect.params import DetectParams, resolve_engine
from core.detect.tiled import Predictor
from core.errors import KdmsiError
from core.models.model_file import LoadedModel, ModelInfo, load_model
from core.runtime.precision import autocast_dtype, describe

if TYPE_CHECKING:
    from core.detect.onnx import OnnxStudent


def load_predictor(
    model_path: Path,
    params: DetectParams,
    device: torch.device,
    scratch: Path,
    threads: int = 0,
    loaded: LoadedModel | None = None,
) -> tuple[ModelInfo, Predictor, str]:
    """The model's description, its predictor for ``params`` and the engine that runs it.

    Args:
        model_path: a ``.pt`` model file or a ``.onnx`` export.
        params: method, scales, engine...
        device: where a torch network runs.
        scratch: a folder for the temporary ONNX export of a ``.pt`` file.
        threads: onnxruntime threads (0: its default, all cores).
        loaded: the ``.pt`` file already read (:func:`load_model`), so it is not read again.
    """
    engine = resolve_engine(params.engine, model_path, params.method, device.type, params.precision)
    if engine == "torch":
        info, states = loaded or load_model(model_path)
        predictor = predictors.make_predictor(
            params.method, info, states, Path(model_path), device, params.scales, params.flip,
            params.max_pixels, autocast_dtype(params.precision, device),
            params.pair_cva_threshold or None, params.cva_standard,
        )  # fmt: skip
    else:
        student = _onnx_student(Path(model_path), scratch, threads)
        info = student.info
        predictor = predictors.onnx_predictor(
            student, params.scales, params.flip, params.max_pixels
        )
        if params.method == "kdmsi-cva":
            predictor = fused_predictor(
                predictor, params.pair_cva_threshold, info.cva_window, info.affinity_rounds,
                params.cva_standard, info.field_for(params.scales),
            )  # fmt: skip
    if params.method == "kdmsi":  # both engines: the student's own map, divided as trained
        predictor = flattened(predictor, info.student_field(params.scales))
    return info, predictor, engine


def onnx_file(model_path: Path, scratch: Path) -> Path:
    """The ONNX network of a model: the file itself, or the cached export of a ``.pt`` file."""
    if model_path.suffix.lower() == ".onnx":
        return model_path
    from core.detect.onnx_cache import onnx_export_for

    return onnx_export_for(model_path, scratch)[0]


def _onnx_student(model_path: Path, scratch: Path, threads: int) -> OnnxStudent:
    """Open the model's ONNX network; a cached export that cannot be read is made again."""
    from core.detect.onnx import OnnxStudent
    from core.detect.onnx_cache import forget

    path = onnx_file(model_path, scratch)
    try:
        return OnnxStudent(path, threads)
    except KdmsiError:
        if path == model_path:
            raise
        forget(path)
        return OnnxStudent(onnx_file(model_path, scratch), threads)


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
    networks = {"kdmsi": "student", "kdmsi-cva": "student", "cam": "teacher"}
    network = {**networks, "kdmsi-refined": "refined"}.get(params.method, "")
    scales = tuple(params.scales)
    field = info.student_field(scales) if params.method == "kdmsi" else info.field_for(scales)
    flat = {  # the field's centre-to-ring ratio (the field itself is in the model file)
        "kdmsi_flat_field": "none" if field is None else f"{centre_to_ring(field):.4g}",
    }
    fused = {
        "kdmsi_cva_threshold": f"{params.pair_cva_threshold:.6g}",
        "kdmsi_cva_window": str(info.cva_window),
        "kdmsi_affinity_rounds": str(info.affinity_rounds),
        "kdmsi_cva_standard": ",".join(f"{v:.6g}" for v in params.pair_cva_standard) or "none",
    }
    return {
        **(fused if params.method == "kdmsi-cva" else {}),
        **(flat if params.method in ("kdmsi", "kdmsi-cva") else {}),
        "kdmsi_method": params.method,
        "kdmsi_network": network,
        "kdmsi_threshold": str(info.threshold_for(params.method, params.scales)),
        "kdmsi_scales": ",".join(f"{s:g}" for s in params.scales),
        "kdmsi_flip": str(bool(params.flip)).lower(),
        "kdmsi_engine": engine,
        "kdmsi_precision": precision,
        "kdmsi_model": str(Path(model_path).resolve()),
    }
