"""ResNet-18 and ResNet-50 backbones whose parameter names match torchvision.

torchvision's ImageNet ``.pth`` files load strictly (only the classifier ``fc.*`` is dropped).
Bottleneck blocks put the stride on the 3x3 convolution (ResNet v1.5, as torchvision). Inputs are
normalized with the ImageNet mean and standard deviation. ``Features.low`` is ``layer1`` (stride 4)
and ``Features.high`` is ``layer4``. At output stride 16 ``layer4`` and at 8 also ``layer3`` trade
their stride for dilation (torchvision's ``replace_stride_with_dilation``; basic blocks dilate both
3x3 convolutions).

Weights come, in order, from the file the caller names, from the torch hub cache
(``torch.hub.get_dir()/checkpoints/resnet50-*.pth``), or from a download of the official file into
that cache; when all fail the backbone keeps random weights and a loud warning is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch
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
)
from core.models.backbones.hub_weights import cached_weights, download_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")
WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class ResNetConfig:
    """Architecture and official weights of one ResNet.

    Attributes:
        bottleneck: bottleneck blocks (expansion 4) instead of basic blocks.
        layers: number of blocks in ``layer1`` to ``layer4``.
        url: the torchvision ImageNet weights.
    """

    bottleneck: bool
    layers: tuple[int, int, int, int]
    url: str

    @property
    def expansion(self) -> int:
        """Output channels of a block divided by its width."""
        return 4 if self.bottleneck else 1


RESNET_CONFIGS = MappingProxyType(
    {
        "resnet18": ResNetConfig(
            False, (2, 2, 2, 2), "https://download.pytorch.org/models/resnet18-f37072fd.pth"
        ),
        "resnet50": ResNetConfig(
            True, (3, 4, 6, 3), "https://download.pytorch.org/models/resnet50-0676ba61.pth"
        ),
    }
)


@dataclass(frozen=True)
class BlockArgs:
    """Arguments of one residual block.

    Attributes:
        in_channels: input channels.
        width: channels of the 3x3 convolution.
        stride: stride of the block.
        dilation: dilation of the 3x3 convolution(s).
        expansion: output channels divided by ``width``.
    """

    in_channels: int
    width: int
    stride: int
    dilation: int
    expansion: int


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """A bias-free 3x3 convolution keeping the size (up to the stride).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride.
        dilation: dilation (padding follows it).

    Returns:
        The convolution.
    """
    return nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False
    )


def make_downsample(args: BlockArgs) -> nn.Sequential | None:
    """The 1x1 projection of the shortcut when the block changes size or channels.

    Args:
        args: the block's arguments.

    Returns:
        ``Sequential(conv, bn)`` (keys ``downsample.0``, ``downsample.1``) or None.
    """
    out_channels = args.width * args.expansion
    if args.stride == 1 and args.in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(args.in_channels, out_channels, 1, args.stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18/34)."""

    def __init__(self, args: BlockArgs) -> None:
        super().__init__()
        self.conv1 = conv3x3(args.in_channels, args.width, args.stride, args.dilation)
        self.bn1 = nn.BatchNorm2d(args.width)
        self.conv2 = conv3x3(args.width, args.width, 1, args.dilation)
        self.bn2 = nn.BatchNorm2d(args.width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_downsample(args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: input features.

        Returns:
            Output features.
        """
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand, with a shortcut (ResNet-50)."""

    def __init__(self, args: BlockArgs) -> None:
        super().__init__()
        out_channels = args.width * args.expansion
        self.conv1 = nn.Conv2d(args.in_channels, args.width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(args.width)
        self.conv2 = conv3x3(args.width, args.width, args.stride, args.dilation)
        self.bn2 = nn.BatchNorm2d(args.width)
        self.conv3 = nn.Conv2d(args.width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_downsample(args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: input features.

        Returns:
            Output features.
        """
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


def plan_layers(config: ResNetConfig, output_stride: int) -> list[list[BlockArgs]]:
    """Block arguments of ``layer1`` to ``layer4``, trading late strides for dilation.

    Args:
        config: the architecture.
        output_stride: 8, 16 or 32.

    Returns:
        One list of :class:`BlockArgs` per layer.
    """
    layers: list[list[BlockArgs]] = []
    current, dilation, channels = 4, 1, 64  # stem and max pool have stride 4
    for index, (width, repeats) in enumerate(zip(WIDTHS, config.layers)):
        stride, first_dilation = (1 if index == 0 else 2), dilation
        if stride > 1 and current * stride > output_stride:
            dilation, stride = dilation * stride, 1
        else:
            current *= stride
        blocks = []
        for block in range(repeats):
            blocks.append(
                BlockArgs(
                    channels,
                    width,
                    stride if block == 0 else 1,
                    first_dilation if block == 0 else dilation,
                    config.expansion,
                )
            )
            channels = width * config.expansion
        layers.append(blocks)
    return layers


class ResNet(Backbone):
    """ResNet without its classifier; ``low`` is ``layer1`` and ``high`` is ``layer4``."""

    def __init__(self, spec: BackboneSpec, config: ResNetConfig) -> None:
        expansion = config.expansion
        layout = Layout(64 * expansion, 512 * expansion, IMAGENET_MEAN, IMAGENET_STD)
        super().__init__(spec, layout)
        self.conv1 = nn.Conv2d(spec.in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        block_type = Bottleneck if config.bottleneck else BasicBlock
        layers = [
            nn.Sequential(*(block_type(args) for args in blocks))
            for blocks in plan_layers(config, spec.output_stride)
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> Features:
        """Compute the features of ImageNet-normalized images.

        Args:
            x: tensor ``(N, in_channels, H, W)``.

        Returns:
            ``low`` (``layer1``, stride 4) and ``high`` (``layer4``, ``output_stride``).
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        high = self.layer4(self.layer3(self.layer2(low)))
        return Features(low, high)

    @property
    def stage_count(self) -> int:
        """The stem (convolution, batch norm, max pool) and ``layer1`` to ``layer4``."""
        return 5

    def _stage_modules(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def stages(self, count: int) -> list[nn.Module]:
        """The stem (stage 0) and ``layer1`` to ``layer{count - 1}``.

        Args:
            count: number of stages, 0 to 5.

        Returns:
            The modules that compute them.
        """
        return [m for group in self._stage_modules()[: max(count, 0)] for m in group]

    def _run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if start <= 0 < stop:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[
            max(start - 1, 0) : stop - 1
        ]:
            x = layer(x)
        return x

    def forward_stages(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """Run the stem and ``layer1`` to ``layer{count - 1}``.

        Args:
            x: ImageNet-normalized images.
            count: number of stages (0 returns ``x``).

        Returns:
            The features after those stages.
        """
        return self._run(x, 0, count)

    def forward_high(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run the stages from ``start`` on.

        Args:
            x: ``forward_stages(images, start)``.
            start: number of stages already run.

        Returns:
            ``layer4``'s features.
        """
        return self._run(x, start, self.stage_count)


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def find_weights(
    spec: BackboneSpec, config: ResNetConfig, log: LogFn | None
) -> WeightSource | None:
    """Weights from the named file, the hub cache or a download, as the module docstring says.

    Args:
        spec: what to build.
        config: the architecture and its official URL.
        log: ``log(level, message)`` or None.

    Returns:
        The weights, or None for random weights.

    Raises:
        KdmsiError: a weights file that cannot be read.
    """
    if spec.weights is not None:
        return WeightSource(read_state_dict(spec.weights), spec.weights)
    if not spec.pretrained:
        return None
    cached = cached_weights(spec.name, config.url)
    if cached is not None:
        return WeightSource(read_state_dict(cached), cached)
    return download_weights(spec.name, config.url, log)


def build_resnet(spec: BackboneSpec, log: LogFn | None) -> ResNet:
    """Build a ResNet and load its weights as :func:`build_backbone` describes.

    Args:
        spec: what to build (``name`` is ``resnet18`` or ``resnet50``).
        log: ``log(level, message)`` or None.

    Returns:
        The backbone.

    Raises:
        KdmsiError: a weights file that cannot be read or does not fit.
    """
    config = RESNET_CONFIGS[spec.name]
    model = ResNet(spec, config)
    source = find_weights(spec, config, log)
    if source is not None:
        load_weights(model, source, "conv1.weight", CLASSIFIER_KEYS)
        info(log, f"{spec.name}: weights loaded from {source.path}")
    return model
