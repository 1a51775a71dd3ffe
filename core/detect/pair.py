"""Change detection with a trained model over a whole pair (the learned methods of ``detect``).

The model's predictor (:mod:`core.detect.loading`) runs over the pair in tiled windows
(:mod:`core.detect.tiled`); ``workers > 1`` splits the raster into bands of rows computed by
separate processes (:mod:`core.detect.parallel`); the result is the same as with one.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from core.callbacks import Callbacks
from core.data.magnitude import pair_standardisation, pair_threshold, standardises
from core.detect.cva import run_cva
from core.detect.loading import check_bands, detect_metadata, load_predictor
from core.detect.parallel import detect_in_parallel
from core.detect.params import METHOD_NAMES, DetectParams, auto_method
from core.detect.ranks import detect_on_ranks
from core.detect.tiled import predict_pair
from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.models.model_file import LoadedModel, ModelInfo, load_model
from core.runtime.devices import pick_device
from core.runtime.distributed import SINGLE, DistEnv

CVA_PASS_SHARE = 0.05  # of detect's progress bar, for kdmsi-cva's pass over the pair


def detect_with_model(
    before: Path,
    after: Path,
    model_path: Path,
    out: Path,
    params: DetectParams,
    bands: tuple[int, ...] | None = None,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
    env: DistEnv = SINGLE,
) -> float:
    """Write the change probability of a pair with a trained model; return the threshold to use.

    The pair is read with the model's bands unless ``bands`` is given, and is stretched with its
    own percentiles, as the training pairs were.

    With ``method`` ``auto`` the map chosen after training runs; when that is change vector
    analysis, its 0/1 mask is written beside ``out`` as ``OUT_mask.tif``. ``kdmsi-cva`` first
    measures the pair's CVA threshold (one pass over the pair) unless ``params`` holds it.
    Under ``torchrun`` (``env`` with several ranks) every rank calls this and computes its share
    of the windows (:mod:`core.detect.ranks`); rank 0 writes ``out``.

    Raises:
        KdmsiError: when the bands do not match the model's.
    """
    callbacks = callbacks or Callbacks()
    loaded = None if _is_onnx(model_path) else load_model(model_path)  # read once: 27 MB
    _warn_if_unfinished(model_path, loaded, callbacks)
    if params.method == "auto":
        method = "kdmsi" if loaded is None else auto_method(loaded[0])
        params = replace(params, method=method)
        _explain_auto(params.method, model_path, loaded, callbacks)
    if params.method == "cva":
        if not env.is_main:  # CVA is fast: rank 0 alone computes it
            return 0.5
        cva_bands = bands or tuple(_model_info(model_path, loaded).bands)
        return _cva(before, after, out, cva_bands, callbacks, overwrite)
    if params.method == "kdmsi-cva" and not params.pair_cva_threshold:
        info = _model_info(model_path, loaded)  # an ONNX file's opens a session: once
        threshold, standard = _pair_cva_cue(
            before, after, bands or tuple(info.bands), info.cva_standardised,
            callbacks.within(0.0, CVA_PASS_SHARE),
        )  # fmt: skip
        params = replace(params, pair_cva_threshold=threshold, pair_cva_standard=standard)
        callbacks = callbacks.within(CVA_PASS_SHARE, 1.0)
    if env.is_distributed:
        if params.workers > 1:
            raise KdmsiError(
                "--workers splits a raster among the processes of one machine; under torchrun "
                "the ranks already share it: leave --workers at 1."
            )
        return detect_on_ranks(
            before, after, model_path, out, params, env, bands, callbacks, overwrite
        )
    if params.workers > 1:
        return detect_in_parallel(
            before, after, model_path, out, params, bands, callbacks, overwrite
        )
    return _detect_here(
        (before, after), model_path, loaded, out, params, bands, callbacks, overwrite
    )


def _detect_here(
    pair_paths: tuple[Path, Path],
    model_path: Path,
    loaded: LoadedModel | None,
    out: Path,
    params: DetectParams,
    bands: tuple[int, ...] | None,
    callbacks: Callbacks,
    overwrite: bool,
) -> float:
    """:func:`detect_with_model` in this process, on one device; return the threshold."""
    device = pick_device(params.device, callbacks.log)
    with tempfile.TemporaryDirectory(prefix="kdmsi-onnx-") as scratch:
        info, predictor, engine = load_predictor(
            model_path, params, device, Path(scratch), loaded=loaded
        )
        bands = check_bands(info, bands, model_path)
        metadata = detect_metadata(info, params, model_path, engine, device)
        callbacks.info(f"Running {params.method} with {engine} in {metadata['kdmsi_precision']}.")
        _explain_flat_field(metadata, params.method, callbacks)
        tiling = params.tiling(info.tile)
        with RasterPair.open(*pair_paths, bands, callbacks) as pair:
            stretch = compute_stretch(pair)
            predict_pair(
                pair, predictor, stretch, out, tiling, device, metadata, callbacks, overwrite
            )
    return info.threshold_for(params.method, params.scales)


def _explain_flat_field(metadata: dict[str, str], method: str, callbacks: Callbacks) -> None:
    """Say, in one sentence, that the network's map is divided by its flat field (if it is)."""
    if metadata.get("kdmsi_flat_field", "none") == "none":
        return
    combined = " before it is combined with the colour difference"
    callbacks.info(
        "The network's map is divided by its average over the tagged tiles"
        f"{combined if method == 'kdmsi-cva' else ''}: on those tiles it answered "
        f"{float(metadata['kdmsi_flat_field']):.2f} times as strongly in the middle of "
        "a window as near its edges, and dividing evens that out."
    )


def _explain_auto(
    method: str, model_path: Path, loaded: LoadedModel | None, callbacks: Callbacks
) -> None:
    """Say which map ``auto`` runs and why, and warn when the model is unreliable."""
    if loaded is None:
        callbacks.info(
            f"Detect runs {METHOD_NAMES[method]} ({method}): an ONNX file holds the trained "
            "network only."
        )
        return
    info = loaded[0]
    reason = info.method_choice.get("reason")
    name = f"{METHOD_NAMES.get(method, method)} ({method})"
    callbacks.info(f"Detect runs {name}" + (f", because {reason}." if reason else "."))
    leader = info.method_choice.get("leader")
    if leader and leader != method:
        callbacks.info(
            f"On the held-out tags {METHOD_NAMES.get(leader, leader)} ranked the tiles better; "
            f"run detect with --method {leader} to compare."
        )
    if not info.reliable:
        callbacks.warning(
            f"The model {model_path} did not tell its held-out changed tiles from the unchanged "
            "ones better than chance, so this map is unreliable; tag more tiles (kdmsi suggest "
            "proposes which) and train again."
        )


def _warn_if_unfinished(model_path: Path, loaded: LoadedModel | None, callbacks: Callbacks) -> None:
    """Say so when the model file comes from a training run that was canceled midway."""
    if loaded is None or loaded[0].finished:
        return
    callbacks.warning(
        f"The model {model_path} comes from a training run that did not finish (canceled): its "
        "thresholds and map were not chosen from your tags, so this map is cut at 0.5 and may "
        "be poor. Resume that training to finish the model."
    )


def _is_onnx(model_path: Path) -> bool:
    return Path(model_path).suffix.lower() == ".onnx"


def _model_info(model_path: Path, loaded: LoadedModel | None) -> ModelInfo:
    """The model's description: from the loaded ``.pt`` file, or from the ONNX export."""
    if loaded is not None:
        return loaded[0]
    from core.detect.onnx import OnnxStudent

    return OnnxStudent(Path(model_path), 1).info


def _pair_cva_cue(
    before: Path, after: Path, bands: tuple[int, ...], standardised: bool, callbacks: Callbacks
) -> tuple[float, tuple[float, ...]]:
    """What ``kdmsi-cva`` scales the colour difference by: a threshold and a standardisation.

    The standardisation (empty for pairs of several bands and for models trained before it)
    is that of a one-band pair, and the threshold is then the standardised difference's.
    """
    with RasterPair.open(before, after, bands, callbacks) as pair:
        stretch = compute_stretch(pair)
        if standardised and standardises(pair.band_count):
            standard = pair_standardisation(pair, stretch, callbacks)
            threshold = pair_threshold(pair, stretch, callbacks, standard=standard)
        else:
            standard, threshold = None, pair_threshold(pair, stretch, callbacks)
    if standard is not None:
        callbacks.info(
            f"Change vector analysis threshold of this one-band pair: {threshold:.4f} on the "
            "dates each standardised by their mean and spread (the difference is combined with "
            "the trained network's map)."
        )
        return threshold, standard.values
    callbacks.info(
        f"Change vector analysis threshold of this pair: {threshold:.4f} (the colour "
        "difference is combined with the trained network's map)."
    )
    return threshold, ()


def _cva(
    before: Path,
    after: Path,
    out: Path,
    bands: tuple[int, ...],
    callbacks: Callbacks,
    overwrite: bool,
) -> float:
    """Change vector analysis of the pair (``auto`` chose it); its threshold is 0.5."""
    mask_out = out.with_name(f"{out.stem}_mask.tif")
    with RasterPair.open(before, after, bands, callbacks) as pair:
        run_cva(pair, out, mask_out, callbacks, overwrite)
    return 0.5
