"""Export the student of a model file to ONNX, to run with onnxruntime.

The ONNX file takes ``before`` and ``after`` images ``[N, C, H, W]`` in [0, 1] (dynamic batch,
height and width; heights and widths multiples of 16) and gives ``probability`` and ``cam`` at the
output stride. It carries the model's description, so ``kdmsi detect --model student.onnx`` uses
it directly (with MSI or ``--scales 1``). Needs the ``onnx`` package; running it needs
``onnxruntime``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.events import Reporter
from core.cli.options import add_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``kdmsi export``."""
    parser.add_argument("--model", type=Path, required=True, help="model file from kdmsi train")
    parser.add_argument("--onnx", type=Path, required=True, help="output .onnx file")
    add_overwrite(parser)


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    """Write the ONNX file and report its path."""
    from core.detect.onnx import export_onnx

    callbacks = reporter.callbacks("export")
    callbacks.progress(0.0, f"exporting the student of {args.model}")
    path = export_onnx(args.model, args.onnx, args.overwrite)
    callbacks.progress(1.0, f"wrote {path}")
    reporter.result({"onnx": str(path)}, {})
