"""What ``kdmsi detect`` runs with a trained model: the parameters and how ``auto`` resolves.

Engines: ``torch`` runs the networks of a ``.pt`` model file; ``onnx`` runs the student exported by
``kdmsi export`` with onnxruntime (``kdmsi`` method only, on the CPU; a ``.pt`` file is exported to
a temporary ONNX file first; ``kdmsi-cva`` adds CVA to its map); ``auto`` picks ``onnx`` for a
``.onnx`` model and ``torch`` otherwise.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from core.choices import CHOICES, DEFAULTS, Device, Engine, Method, Precision, check_choice
from core.data.magnitude import Standardisation
from core.detect.msi import MAX_PIXELS
from core.detect.tiled import TilingParams
from core.errors import KdmsiError
from core.models.model_file import ModelInfo, load_model
from core.runtime.precision import cpu_has_bf16

ONNX_METHODS = ("kdmsi", "kdmsi-cva")  # the student alone is exported


def onnx_installed() -> bool:
    """True when the ONNX engine can run here (``onnx`` to export, ``onnxruntime`` to run)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


ENGINES = CHOICES["engine"]
# Context read around each window of the refinement network, in training tiles (a quarter of
# one); the student and teacher get none (see ``DetectParams.window``).
REFINED_MARGIN = 0.25
# What each map is, in words, for messages.
METHOD_NAMES = {
    "kdmsi-cva": "the trained network combined with change vector analysis",
    "kdmsi": "the trained network alone (student with multiscale inference)",
    "kdmsi-refined": "the refinement network",
    "cam": "the teacher network's activation map",
    "cva": "change vector analysis (the colour difference, nothing learned)",
}


@dataclass(frozen=True)
class DetectParams:
    """What to run: the method, MSI scales, flips, device and tiling.

    Attributes:
        method: ``auto``, ``kdmsi``, ``cam``, ``kdmsi-refined`` or ``cva``; ``auto`` runs the
            map chosen on the held-out tags after training (:func:`resolve_method`).
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
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:mod:`core.runtime.precision`; torch
            engine only).
        pair_cva_threshold: the pair's CVA threshold for ``kdmsi-cva``; 0 (default) lets
            ``detect`` measure it (:func:`core.data.magnitude.pair_cue`).
        pair_cva_standard: with it, the one-band pair's standardisation
            (:attr:`core.data.magnitude.Standardisation.values`), and ``pair_cva_threshold`` is
            the standardised magnitude's threshold; empty: the plain magnitude.
    """

    method: Method = DEFAULTS.method
    scales: tuple[float, ...] = DEFAULTS.scales
    flip: bool = True
    device: Device = DEFAULTS.device
    batch_size: int = 4
    window: int = 0
    overlap: int = -1
    engine: Engine = DEFAULTS.engine
    workers: int = 1
    max_pixels: int = MAX_PIXELS
    precision: Precision = DEFAULTS.precision
    pair_cva_threshold: float = 0.0
    pair_cva_standard: tuple[float, ...] = ()

    @property
    def cva_standard(self) -> Standardisation | None:
        """``pair_cva_standard`` as a :class:`Standardisation` (None when empty)."""
        return Standardisation(*self.pair_cva_standard) if self.pair_cva_standard else None

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
        align = 64 if self.method in ("kdmsi", "kdmsi-cva") and multiscale else 16
        return TilingParams(window, overlap, self.batch_size, margin, align)


def resolve_method(method: str, model_path: Path) -> str:
    """The method ``auto`` stands for with this model file.

    It is the map stored after training (:mod:`core.train.method_choice`: ``kdmsi-cva`` for
    models trained since session 16, the map chosen on the held-out tags for older ones), except
    that a model holding the refinement network (trained on request) runs it whenever a
    map of the trained network was chosen. An ONNX export holds the student alone, so ``auto``
    means ``kdmsi`` there.
    """
    if method != "auto":
        return method
    if Path(model_path).suffix.lower() == ".onnx":
        return "kdmsi"
    return auto_method(load_model(model_path)[0])


def auto_method(info: ModelInfo) -> str:
    """The method ``auto`` stands for with the ``.pt`` model ``info`` describes."""
    if info.auto_method in ("kdmsi", "kdmsi-cva") and info.refined_output_stride:
        return "kdmsi-refined"
    return info.auto_method


def resolve_engine(
    engine: str,
    model_path: Path,
    method: str,
    device_type: str = "cpu",
    precision: str = "auto",
) -> str:
    """``torch`` or ``onnx`` for the requested engine, model file, method, device and precision.

    ``auto`` runs an ONNX file with onnxruntime, and on the CPU also a ``.pt`` model's student
    (methods ``kdmsi`` and ``kdmsi-cva``) in float32 when onnx and onnxruntime are installed: the
    same map to about 1e-6, 1.3-1.5x faster than torch in float32 (BENCHMARKS.md); torch
    otherwise (GPUs, other networks, half precision asked for, and ``--precision auto`` on a CPU
    with native bfloat16, where torch runs bfloat16, the precision the model's thresholds were
    chosen in, and was 1.19x faster than ONNX in float32 on one: BENCHMARKS.md, session 18).

    Raises:
        KdmsiError: an unknown engine, a torch engine for an ONNX file, or ONNX for a method
            other than ``kdmsi`` and ``kdmsi-cva``.
    """
    check_choice(engine, "engine", "--engine")
    is_onnx = Path(model_path).suffix.lower() == ".onnx"
    float32 = precision == "fp32" or (precision == "auto" and not cpu_has_bf16())
    faster = device_type == "cpu" and method in ONNX_METHODS and float32
    onnx = is_onnx or (faster and onnx_installed())
    chosen = engine if engine != "auto" else ("onnx" if onnx else "torch")
    if chosen == "torch" and is_onnx:
        raise KdmsiError(
            f"The model {model_path} is an ONNX file, which the torch engine cannot run; "
            "use --engine onnx or give the .pt model file."
        )
    if chosen == "onnx" and method not in ONNX_METHODS:
        raise KdmsiError(
            f"The ONNX engine runs only --method kdmsi or kdmsi-cva, not {method}; use "
            "--engine torch with the .pt model file."
        )
    return chosen
