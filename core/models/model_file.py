"""The self-describing model file: networks plus everything needed to use them correctly.

A model file is a ``torch.save`` dictionary with ``format: "kdmsi-model"``, a format version, a
:class:`ModelInfo` (backbone, fusions, bands, tile size, threshold, training summary, code
version) and state dicts of the student (always), the teacher (for the CAM ablation) and,
after refinement, the segmentation network. It is written to a temporary name, then renamed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import __version__
from core.choices import DEFAULTS
from core.errors import KdmsiError

FORMAT = "kdmsi-model"
FORMAT_VERSION = 1
NETWORKS = ("student", "teacher", "refined")


# The threshold rule of a model file whose training has not finished (the thresholds are 0.5).
UNCHOSEN = "fixed 0.5"
# Pixels: method kdmsi-cva averages CVA's magnitude over this square (core/detect/fusion.py);
# files written before the window was stored used 3.
CVA_WINDOW = 5
LEGACY_CVA_WINDOW = 3
# Rounds of colour-affinity refinement of that combination (core/detect/affinity.py); files
# written before it existed used none. 0 (off): 10 rounds passed the trial on seeds 0 and 1 and
# failed on seed 2 (BENCHMARKS.md, session 18). `kdmsi train --affinity-rounds` opts in.
AFFINITY_ROUNDS = DEFAULTS.affinity_rounds
LEGACY_AFFINITY_ROUNDS = 0
# One-band pairs: that combination standardises each date first (core/data/magnitude.py, session
# 20); files written before it used the plain difference.
LEGACY_CVA_STANDARDISED = False


@dataclass
class ModelInfo:
    """What a model file says about itself.

    Attributes:
        backbone: backbone name (e.g. ``efficientnet-lite0``).
        teacher_fusion: fusion of the teacher CAM network.
        student_fusion: fusion of the student CAM network.
        output_stride: backbone output stride.
        bands: 1-based bands it was trained on.
        tile: training tile size in pixels.
        threshold: change threshold of the student with MSI, chosen without pixel labels.
        threshold_single: the same for single-scale inference (``--scales 1``).
        threshold_rule: how the thresholds were chosen.
        threshold_cam: the same rule's threshold for the teacher's CAM (``--method cam``).
        threshold_fused: the same rule's threshold for the student with MSI combined with CVA
            (``--method kdmsi-cva``, :mod:`core.detect.fusion`).
        threshold_fused_single: the same for its single-scale map.
        cva_window: the square (pixels) CVA's magnitude is averaged over in that combination;
            its thresholds were chosen with it.
        affinity_rounds: rounds of colour-affinity refinement of the combination
            (:mod:`core.detect.affinity`); its thresholds were chosen with them.
        cva_standardised: for one-band pairs, the combination uses the dates each standardised
            over the pair (:class:`core.data.magnitude.Standardisation`); its thresholds were
            chosen so.
        flat_field: the student's average map (MSI) over the tagged tiles, row-major ``tile`` x
            ``tile``, that the combination divides it by (:mod:`core.detect.flat_field`); empty
            in files written before session 21 (no division), whose thresholds were chosen so.
        flat_field_single: the same for the single-scale map.
        student_flattened: the student's own map (``kdmsi``) is divided by those fields too, and
            its thresholds were chosen so; False in files written before session 22, whose
            ``kdmsi`` thresholds were chosen on the undivided map.
        refined_output_stride: stride of the refinement network, 0 when absent.
        train_summary: tags, epochs, selected epoch, validation AUC...
        method_choice: which map ``detect --method auto`` runs and why
            (:mod:`core.train.method_choice`); empty in files written before that choice existed.
        code_version: kdmsi version that wrote the file.
    """

    backbone: str
    teacher_fusion: str
    student_fusion: str
    output_stride: int
    bands: list[int]
    tile: int
    threshold: float = 0.5
    threshold_single: float = 0.5
    threshold_rule: str = UNCHOSEN
    threshold_cam: float = 0.5
    threshold_fused: float = 0.5
    threshold_fused_single: float = 0.5
    cva_window: int = CVA_WINDOW
    affinity_rounds: int = AFFINITY_ROUNDS
    cva_standardised: bool = True
    flat_field: list[float] = field(default_factory=list)
    flat_field_single: list[float] = field(default_factory=list)
    student_flattened: bool = False
    refined_output_stride: int = 0
    train_summary: dict[str, Any] = field(default_factory=dict)
    method_choice: dict[str, Any] = field(default_factory=dict)
    code_version: str = __version__

    def threshold_for(self, method: str, scales: tuple[float, ...]) -> float:
        """The threshold that goes with a detection method and its scales."""
        if method == "kdmsi":
            return self.threshold_single if tuple(scales) == (1.0,) else self.threshold
        if method == "kdmsi-cva":
            single = tuple(scales) == (1.0,)
            return self.threshold_fused_single if single else self.threshold_fused
        if method == "cam":
            return self.threshold_cam
        return 0.5

    def field_for(self, scales: tuple[float, ...]) -> np.ndarray | None:
        """The flat field ``[tile, tile]`` of the student's map at ``scales``; None without one."""
        values = self.flat_field_single if tuple(scales) == (1.0,) else self.flat_field
        if not values:
            return None
        return np.asarray(values, np.float32).reshape(self.tile, self.tile)

    def student_field(self, scales: tuple[float, ...]) -> np.ndarray | None:
        """The field the student's own map (``kdmsi``) at ``scales`` is divided by, or None."""
        return self.field_for(scales) if self.student_flattened else None

    @property
    def auto_method(self) -> str:
        """The map chosen on held-out tags (``kdmsi`` in files written before the choice)."""
        return str(self.method_choice.get("method", "kdmsi"))

    @property
    def reliable(self) -> bool:
        """False when the chosen map did not rank the held-out tags better than chance."""
        return bool(self.method_choice.get("reliable", True))

    @property
    def finished(self) -> bool:
        """True once training ran to its end and chose the thresholds (False: canceled midway).

        During training the best epoch so far is written with the default thresholds; the end
        of training replaces them with ones chosen on the tags.
        """
        return self.threshold_rule != UNCHOSEN

    @property
    def in_channels(self) -> int:
        """Number of input bands per date."""
        return len(self.bands)


def save_model(path: Path, info: ModelInfo, states: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write a model file atomically.

    Args:
        path: output file (``.pt``).
        info: the description.
        states: network name (``student``, ``teacher``, ``refined``) -> state dict.
    """
    unknown = set(states) - set(NETWORKS)
    if unknown or "student" not in states:
        raise ValueError(f"states must hold 'student' and only {NETWORKS}, got {sorted(states)}")
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "info": asdict(info)}
    payload.update(
        {f"{name}_state": {k: v.detach().cpu() for k, v in s.items()} for name, s in states.items()}
    )
    torch.save(payload, partial)
    partial.replace(path)


LoadedModel = tuple[ModelInfo, dict[str, dict[str, torch.Tensor]]]
"""What :func:`load_model` returns: the description and the networks' state dicts."""


def load_model(path: Path) -> LoadedModel:
    """Read a model file and check that it is one.

    Returns:
        The description and the state dicts present.

    Raises:
        KdmsiError: when the file is missing, corrupt, truncated, not a kdmsi model or of a
            newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise KdmsiError(f"The model file {path} does not exist; train one with `kdmsi train`.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise KdmsiError(
            f"The model file {path} is corrupt or truncated ({type(exc).__name__}); "
            "train it again or copy it anew."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise KdmsiError(
            f"{path} is not a kdmsi model file; give a model written by `kdmsi train`."
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise KdmsiError(
            f"The model file {path} has format {payload['format_version']}, newer than this kdmsi "
            f"({__version__}) reads; update kdmsi."
        )
    try:
        info = info_from_dict(payload["info"])
    except TypeError as exc:
        raise KdmsiError(
            f"The model file {path} has an unreadable description; train it again."
        ) from exc
    states = {name: payload[f"{name}_state"] for name in NETWORKS if f"{name}_state" in payload}
    return info, states


def finished_model(path: Path) -> bool:
    """True when ``path`` is a model file whose training ran to its end (thresholds chosen)."""
    return Path(path).is_file() and load_model(path)[0].finished


def info_from_dict(values: dict[str, Any]) -> ModelInfo:
    """A ModelInfo from its stored dictionary, with the values older files imply.

    Raises:
        TypeError: on unknown or missing fields.
    """
    legacy = {
        "cva_window": LEGACY_CVA_WINDOW,
        "affinity_rounds": LEGACY_AFFINITY_ROUNDS,
        "cva_standardised": LEGACY_CVA_STANDARDISED,
    }
    return ModelInfo(**{**legacy, **values})
