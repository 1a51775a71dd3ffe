"""Change detection with a trained model over a whole pair (the learned methods of ``detect``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.callbacks import Callbacks
from core.devices import pick_device
from core.errors import KdmsiError
from core.inference import TilingParams, predict_pair
from core.modelfile import load_model
from core.normalize import compute_stretch
from core.predictors import make_predictor
from core.rasters import RasterPair


@dataclass(frozen=True)
class DetectParams:
    """What to run: the method, MSI scales, flips, device and tiling.

    Attributes:
        method: ``kdmsi``, ``cam`` or ``kdmsi-refined``.
        scales: MSI scales (``(1.0,)`` for single scale).
        flip: also average horizontal flips.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: windows per forward pass.
        window: window edge; 0 means twice the training tile, kept between 256 and 512, so the
            network sees context well beyond a tile and seams are few.
        overlap: pixels shared by neighbouring windows; -1 means a quarter of the window.
    """

    method: str = "kdmsi"
    scales: tuple[float, ...] = (0.5, 1.0, 1.25, 2.0)
    flip: bool = True
    device: str = "auto"
    batch_size: int = 4
    window: int = 0
    overlap: int = -1


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
    info, states = load_model(model_path)
    bands = bands or tuple(info.bands)
    if len(bands) != info.in_channels:
        raise KdmsiError(
            f"The model {model_path} was trained on {info.in_channels} band(s) {info.bands} but "
            f"{len(bands)} were given; pass --bands with {info.in_channels} bands."
        )
    device = pick_device(params.device, callbacks.log)
    network = {"kdmsi": "student", "cam": "teacher", "kdmsi-refined": "refined"}.get(
        params.method, ""
    )
    predictor = make_predictor(
        params.method, info, states, model_path, device, params.scales, params.flip
    )
    window = params.window or min(max(2 * info.tile, 256), 512)
    overlap = params.overlap if params.overlap >= 0 else window // 4
    tiling = TilingParams(window=window, overlap=overlap, batch_size=params.batch_size)
    threshold = info.threshold_for(params.method, params.scales)
    metadata = {
        "kdmsi_method": params.method,
        "kdmsi_network": network,
        "kdmsi_threshold": str(threshold),
        "kdmsi_scales": ",".join(f"{s:g}" for s in params.scales),
        "kdmsi_model": str(Path(model_path).resolve()),
    }
    with RasterPair.open(before, after, bands, callbacks) as pair:
        stretch = compute_stretch(pair)
        predict_pair(pair, predictor, stretch, out, tiling, device, metadata, callbacks, overwrite)
    return threshold
