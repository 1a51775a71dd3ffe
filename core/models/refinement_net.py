"""Refinement segmentation network of the optional last stage, trained on MSI pseudo labels.

DeepLabv3+-style Siamese change segmenter:

* one backbone shared by both dates (one pass, dates concatenated along the batch);
* fusion of each feature level as ``[|B - A|, A, B]`` along channels (``abs_cat``, default): the
  absolute difference carries the change evidence directly and symmetrically, while A and B keep
  what is there on each date (what was built or removed), which the plain difference loses;
  ``cat`` (``[A, B]``) is the alternative;
* high features: 1x1 reduction, then a light ASPP (1x1, two dilated 3x3, image pooling) and a 1x1
  projection;
* upsampled to stride 4 and concatenated with the fused low-level features reduced to 48
  channels, then two 3x3 convolutions and a 1x1 convolution to one channel: logits at stride 4.

Inputs are images in [0, 1], normalized inside as for the CAM classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import KdmsiError
from core.models.backbones.base import LogFn
from core.models.backbones.registry import build_backbone
from core.models.cam import HEAD_LR_MULTIPLIER, ParamSplit, normalize_input

SEG_FUSIONS: tuple[str, ...] = ("abs_cat", "cat")


@dataclass(frozen=True)
class SegNetConfig:
    """What a refinement network is made of (stored in model files).

    Attributes:
        backbone: backbone name (see :data:`core.models.backbones.base.BACKBONE_NAMES`).
        fusion: ``abs_cat`` ([|B-A|, A, B]) or ``cat`` ([A, B]).
        output_stride: stride of the backbone's high features, 16 or 8.
        in_channels: number of input bands.
        pretrained: start the backbone from ImageNet weights.
        channels: width of the ASPP and decoder.
        low_channels: width of the reduced low-level skip (48 as in DeepLabv3+).
        base_rates: ASPP dilations at output stride 16.
    """

    backbone: str = "efficientnet-lite0"
    fusion: str = "abs_cat"
    output_stride: int = 16
    in_channels: int = 3
    pretrained: bool = True
    channels: int = 128
    low_channels: int = 48
    base_rates: tuple[int, int] = (6, 12)

    @property
    def fusion_factor(self) -> int:
        """How many times the backbone's channels the fused features have."""
        return 3 if self.fusion == "abs_cat" else 2

    @property
    def rates(self) -> tuple[int, ...]:
        """ASPP dilations at this output stride (the same field of view in input pixels)."""
        return tuple(max(1, r * 16 // self.output_stride) for r in self.base_rates)


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """Convolution (``same`` padding, no bias), batch normalization and ReLU.

    Args:
        cin: input channels.
        cout: output channels.
        kernel: kernel size (odd).
        dilation: dilation.

    Returns:
        The block.
    """
    pad = dilation * (kernel // 2)
    conv = nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def fuse_levels(fa: torch.Tensor, fb: torch.Tensor, fusion: str) -> torch.Tensor:
    """Fuse one feature level of the two dates.

    Args:
        fa: date A features ``[N, C, h, w]``.
        fb: date B features, same shape.
        fusion: ``abs_cat`` or ``cat``.

    Returns:
        ``[|B-A|, A, B]`` or ``[A, B]`` along channels.
    """
    if fusion == "abs_cat":
        return torch.cat([(fb - fa).abs(), fa, fb], dim=1)
    return torch.cat([fa, fb], dim=1)


class LightASPP(nn.Module):
    """Atrous spatial pyramid pooling with a 1x1 branch, dilated 3x3 branches and image pooling.

    The image-pooling branch has no batch normalization (one value per channel and image would
    fail with a batch of one in training).
    """

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        """Build the branches.

        Args:
            cin: input channels.
            cout: channels of each branch and of the output.
            rates: dilations of the 3x3 branches.
        """
        super().__init__()
        branches = [conv_bn_relu(cin, cout)] + [conv_bn_relu(cin, cout, 3, r) for r in rates]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(cout * (len(branches) + 1), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the pyramid.

        Args:
            x: features ``[N, cin, h, w]``.

        Returns:
            Features ``[N, cout, h, w]``.
        """
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([*(b(x) for b in self.branches), pooled], dim=1))


class ChangeSegNet(nn.Module):
    """Siamese DeepLabv3+-style change segmenter with logits at stride 4.

    Attributes:
        config: what the network is made of.
        backbone: the shared backbone.
    """

    def __init__(
        self,
        config: SegNetConfig | None = None,
        backbone: nn.Module | None = None,
        weights: Path | None = None,
        log: LogFn | None = None,
    ) -> None:
        """Build the network.

        Args:
            config: the description (defaults of :class:`SegNetConfig` when None).
            backbone: a backbone to use instead of building one from the config (a module with
                ``low_channels`` and ``high_channels`` whose ``forward`` gives ``low``/``high``).
            weights: backbone state-dict file passed to :func:`build_backbone`.
            log: ``log(level, message)`` for backbone loading messages.

        Raises:
            KdmsiError: unknown fusion.
        """
        super().__init__()
        cfg = config if config is not None else SegNetConfig()
        if cfg.fusion not in SEG_FUSIONS:
            raise KdmsiError(
                f"Unknown fusion {cfg.fusion!r}; choose one of {', '.join(SEG_FUSIONS)}."
            )
        self.config = cfg
        if backbone is None:
            backbone = build_backbone(
                cfg.backbone, cfg.output_stride, cfg.pretrained, weights, log, cfg.in_channels
            )
        self.backbone = backbone
        k = cfg.fusion_factor
        self.reduce = conv_bn_relu(int(backbone.high_channels) * k, cfg.channels)
        self.aspp = LightASPP(cfg.channels, cfg.channels, cfg.rates)
        self.skip = conv_bn_relu(int(backbone.low_channels) * k, cfg.low_channels)
        self.decoder = nn.Sequential(
            conv_bn_relu(cfg.channels + cfg.low_channels, cfg.channels, 3),
            conv_bn_relu(cfg.channels, cfg.channels, 3),
        )
        self.classifier = nn.Conv2d(cfg.channels, 1, kernel_size=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Compute change logits at stride 4.

        Args:
            a: date A images ``[N, C, H, W]`` in [0, 1].
            b: date B images, same shape.

        Returns:
            Logits ``[N, 1, ceil(H/4), ceil(W/4)]`` (the backbone's stride-4 grid).
        """
        features = self.backbone(normalize_input(torch.cat([a, b], dim=0), self.backbone))
        low_a, low_b = features.low.chunk(2, dim=0)
        high_a, high_b = features.high.chunk(2, dim=0)
        fusion = self.config.fusion
        high = self.aspp(self.reduce(fuse_levels(high_a, high_b, fusion)))
        low = self.skip(fuse_levels(low_a, low_b, fusion))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.decoder(torch.cat([high, low], dim=1)))

    def predict(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Change probability at the input size, in evaluation and inference mode.

        The module's training mode is restored afterwards; the result is an inference tensor.

        Args:
            a: date A images ``[N, C, H, W]`` in [0, 1].
            b: date B images, same shape.

        Returns:
            Probability ``[N, 1, H, W]`` in [0, 1] (sigmoid, then bilinear upsampling).
        """
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                prob = torch.sigmoid(self(a, b).float())
                return F.interpolate(prob, size=a.shape[-2:], mode="bilinear", align_corners=False)
        finally:
            self.train(was_training)

    def param_groups(
        self, lr: float, head_multiplier: float = HEAD_LR_MULTIPLIER
    ) -> list[dict[str, Any]]:
        """Optimizer groups: ``lr`` for the backbone, ``head_multiplier`` x ``lr`` for new layers.

        Args:
            lr: the base learning rate.
            head_multiplier: multiplier of the new layers' learning rate.

        Returns:
            Groups ``backbone`` and ``head``; every parameter appears exactly once.
        """
        split = self.split_parameters()
        return [
            {"name": "backbone", "params": split.backbone, "lr": lr},
            {"name": "head", "params": split.head, "lr": lr * head_multiplier},
        ]

    def split_parameters(self) -> ParamSplit:
        """Split the parameters into the backbone's and the new layers'.

        Returns:
            The split.
        """
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        return ParamSplit(backbone, [p for p in self.parameters() if id(p) not in ids])


def pseudo_label_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Weighted BCE-with-logits against pseudo labels; pixels of weight 0 are ignored.

    The logits are upsampled bilinearly to the target's resolution. The loss is the weighted mean
    ``sum(weight * bce) / sum(weight)`` (0 with a gradient path when every weight is 0). Inference
    tensors (e.g. from :func:`core.detect.msi.msi`) are accepted as target and weight.

    Args:
        logits: ``[N, 1, h, w]`` (e.g. at stride 4).
        target: pseudo labels in [0, 1], ``[N, 1, H, W]`` or ``[N, H, W]``.
        weight: non-negative pixel weights, same shape as ``target`` (0 = uncertain, ignored).

    Returns:
        A scalar loss.
    """
    target = _plain(target).to(logits.dtype)
    weight = _plain(weight).to(logits.dtype)
    if target.dim() == 3:
        target, weight = target.unsqueeze(1), weight.unsqueeze(1)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    keep = weight > 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(logits[keep], target[keep], reduction="none")
    return (bce * weight[keep]).sum() / weight[keep].sum()


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A tensor that autograd may save: inference tensors are cloned outside inference mode."""
    return x.clone() if x.is_inference() and not torch.is_inference_mode_enabled() else x
