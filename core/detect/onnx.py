"""The student as an ONNX network, and running it with onnxruntime.

:func:`export_onnx` writes the student of a model file as ONNX with dynamic batch, height and
width: inputs ``before`` and ``after`` (``[N, C, H, W]`` in [0, 1]), outputs ``probability`` (the
sigmoid of the change map) and ``cam`` (its logits), both ``[N, 1, H/16, W/16]`` at the output
stride. The model file's description (bands, tile, thresholds...) is stored in the ONNX metadata
under ``kdmsi_info``, so ``kdmsi detect --model student.onnx`` needs nothing else.

EfficientNet's TensorFlow "same" padding of its stride-2 convolutions depends on whether each
size is even; the export bakes in the even case, so the ONNX network is exact for heights and
widths that are multiples of :data:`SIZE_MULTIPLE` (tiled inference pads its windows to that),
and :class:`OnnxStudent` refuses other sizes instead of computing something subtly different.

``onnx`` is needed to export and ``onnxruntime`` to run; both are optional dependencies.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import KdmsiError
from core.models.model_file import info_from_dict, load_model

SIZE_MULTIPLE = 16
META_KEY = "kdmsi_info"
OPSET = 17


class ProbabilityNet(nn.Module):
    """The student's single-scale change map: ``(probability, cam)`` at the output stride."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigmoid of the map and the map's logits, ``[N, 1, h, w]`` each."""
        cam = self.student(a, b)
        return torch.sigmoid(cam), cam


def _require(module: str) -> object:
    """Import an optional dependency or say how to install it."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise KdmsiError(
            f"The ONNX engine needs the Python package {module}, which is not installed; "
            f"run `pip install {module}` in the environment that runs kdmsi."
        ) from exc


def export_onnx(model_path: Path, onnx_path: Path, overwrite: bool = False) -> Path:
    """Export the student of a model file to ONNX (dynamic batch, height and width).

    Args:
        model_path: model file from ``kdmsi train``.
        onnx_path: output ``.onnx`` file (written under a temporary name, then renamed).
        overwrite: replace an existing output.

    Returns:
        ``onnx_path``.

    Raises:
        KdmsiError: missing ``onnx``, an unreadable model file or an existing output.
    """
    from core.models.rebuild import build_network

    onnx = _require("onnx")
    onnx_path = Path(onnx_path)
    if onnx_path.exists() and not overwrite:
        raise KdmsiError(f"{onnx_path} already exists; pass --overwrite or choose another output.")
    info, states = load_model(model_path)
    net = ProbabilityNet(build_network(info, states, "student", Path(model_path))).eval()
    example = torch.rand(2, 1, info.in_channels, 4 * SIZE_MULTIPLE, 4 * SIZE_MULTIPLE)
    if not onnx_path.parent.is_dir():
        raise KdmsiError(f"The output folder {onnx_path.parent} does not exist; create it first.")
    partial = onnx_path.with_name(f".{onnx_path.name}.partial")
    axes = {0: "batch", 2: "height", 3: "width"}
    small = {0: "batch", 2: "map_height", 3: "map_width"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the sizes baked in (see the module)
        torch.onnx.export(
            net,
            (example[0], example[1]),
            str(partial),
            dynamo=False,
            input_names=["before", "after"],
            output_names=["probability", "cam"],
            dynamic_axes={"before": axes, "after": axes, "probability": small, "cam": small},
            opset_version=OPSET,
        )
    proto = onnx.load(str(partial))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(asdict(info))
    onnx.save(proto, str(partial))
    partial.replace(onnx_path)
    return onnx_path


class OnnxStudent(nn.Module):
    """An exported student run by onnxruntime, usable wherever the torch student is.

    ``forward(a, b)`` returns the map logits like :class:`core.models.cam.SiameseCAM`, so
    :func:`core.detect.msi.msi` works unchanged on it.

    Attributes:
        info: the model description stored in the ONNX file.
        path: the ONNX file.
    """

    def __init__(self, path: Path, threads: int = 0) -> None:
        """Open an ONNX file written by :func:`export_onnx`.

        Args:
            path: the ``.onnx`` file.
            threads: intra-op threads, 0 for onnxruntime's default (all cores).

        Raises:
            KdmsiError: onnxruntime missing, or a file that is not a kdmsi ONNX export.
        """
        super().__init__()
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise KdmsiError(f"The ONNX model {self.path} does not exist; export one first.")
        options = ort.SessionOptions()  # type: ignore[attr-defined]
        options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(  # type: ignore[attr-defined]
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise KdmsiError(
                f"{self.path} cannot be read as an ONNX model ({type(exc).__name__}); "
                "export it again with `kdmsi export`."
            ) from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if META_KEY not in meta:
            raise KdmsiError(
                f"{self.path} is not a kdmsi ONNX export; write one with `kdmsi export`."
            )
        self.info = info_from_dict(json.loads(meta[META_KEY]))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Map logits ``[N, 1, H/16, W/16]`` of images ``[N, C, H, W]`` in [0, 1].

        Raises:
            KdmsiError: when ``H`` or ``W`` is not a multiple of :data:`SIZE_MULTIPLE`.
        """
        height, width = a.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise KdmsiError(
                f"The ONNX model {self.path} takes sizes that are multiples of {SIZE_MULTIPLE}, "
                f"not {height}x{width}; use the default windows and scales or --engine torch."
            )
        feeds = {
            "before": np.ascontiguousarray(a.detach().cpu().numpy(), dtype=np.float32),
            "after": np.ascontiguousarray(b.detach().cpu().numpy(), dtype=np.float32),
        }
        (cam,) = self._session.run(["cam"], feeds)
        return torch.from_numpy(cam).to(a.device)
