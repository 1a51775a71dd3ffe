"""The interface every backbone implements, and the weight-loading helpers they share.

The registry (:mod:`core.models.backbones.registry`) builds a backbone by name; each concrete
backbone imports this module only, so dependencies run one way.

Every backbone is a :class:`Backbone` whose ``forward(x)`` returns :class:`Features`:

* ``low``: stride-4 features, for a DeepLabv3+-style skip connection;
* ``high``: last-stage features at ``output_stride`` (16 by default, 8 for finer maps, 32 for the
  plain ImageNet classifier layout).

Inputs are images scaled to [0, 1]; call :meth:`Backbone.normalize` (or apply ``input_mean`` and
``input_std`` yourself) before ``forward``.

Output stride follows DeepLab: the last stride-2 stage (OS 16) or the last two (OS 8) keep stride 1
and dilate their convolutions by 2 (and 4 in the last stage at OS 8) instead; the first block of a
changed stage keeps the dilation of the stage before it, as torchvision's
``replace_stride_with_dilation``.

Inputs with ``in_channels != 3`` (for example 4 bands) reuse the RGB stem when weights are loaded:
one channel gets the sum of the three RGB kernels (a grey image gives the RGB response); two or more
channels get the RGB kernels repeated cyclically (channel ``i`` takes kernel ``i % 3``) and scaled
by ``3 / in_channels`` so that the response to an input equal in all bands keeps its magnitude.
``input_mean`` and ``input_std`` are extended the same way (channel ``i`` takes value ``i % 3``; one
channel takes their average).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from core.errors import KdmsiError

LogFn = Callable[[str, str], None]


class Features(NamedTuple):
    """What a backbone returns.

    Attributes:
        low: stride-4 features, shape ``(N, low_channels, H/4, W/4)`` (rounded up).
        high: last-stage features, shape ``(N, high_channels, H/os, W/os)`` (rounded up).
    """

    low: torch.Tensor
    high: torch.Tensor


@dataclass(frozen=True)
class BackboneSpec:
    """What to build.

    Attributes:
        name: a backbone name (:data:`core.models.backbones.registry.BACKBONE_NAMES`).
        output_stride: 8, 16 or 32.
        in_channels: number of input bands.
        pretrained: load ImageNet weights (a missing file gives a warning and random weights).
        weights: a state-dict file to load; it is loaded even when ``pretrained`` is False.
    """

    name: str = "efficientnet-lite0"
    output_stride: int = 16
    in_channels: int = 3
    pretrained: bool = True
    weights: Path | None = None


@dataclass(frozen=True)
class Layout:
    """Fixed facts of a backbone family given to :class:`Backbone`.

    Attributes:
        low_channels: channels of ``Features.low``.
        high_channels: channels of ``Features.high``.
        mean: per-channel mean of RGB inputs in [0, 1].
        std: per-channel standard deviation of RGB inputs in [0, 1].
    """

    low_channels: int
    high_channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Backbone(nn.Module):
    """Common interface of the backbones.

    Attributes:
        name: registry name.
        in_channels: number of input bands.
        low_channels: channels of ``Features.low`` (stride 4).
        high_channels: channels of ``Features.high``.
        output_stride: stride of ``Features.high``.
        input_mean: per-channel mean to subtract from inputs in [0, 1] (``in_channels`` values).
        input_std: per-channel standard deviation to divide by (``in_channels`` values).
    """

    def __init__(self, spec: BackboneSpec, layout: Layout) -> None:
        super().__init__()
        self.name = spec.name
        self.in_channels = spec.in_channels
        self.low_channels = layout.low_channels
        self.high_channels = layout.high_channels
        self.output_stride = spec.output_stride
        self.input_mean = expand_stats(layout.mean, spec.in_channels)
        self.input_std = expand_stats(layout.std, spec.in_channels)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Scale images in [0, 1] the way the pretrained weights expect.

        Args:
            x: tensor ``(N, in_channels, H, W)`` with values in [0, 1].

        Returns:
            ``(x - input_mean) / input_std`` per channel.
        """
        mean = torch.tensor(self.input_mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.input_std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def forward(self, x: torch.Tensor) -> Features:
        """Compute the features of normalized images.

        Args:
            x: tensor ``(N, in_channels, H, W)``, already normalized.

        Returns:
            The ``low`` and ``high`` features.
        """
        raise NotImplementedError

    @property
    def stage_count(self) -> int:
        """Number of stages :meth:`stages` can split off (stage 0 is the stem)."""
        raise NotImplementedError

    def stages(self, count: int) -> list[nn.Module]:
        """The modules of the first ``count`` stages (stage 0 is the stem).

        Args:
            count: number of stages, 0 to :attr:`stage_count`.

        Returns:
            The modules that compute them (to freeze them, or to copy their weights).
        """
        raise NotImplementedError

    def forward_stages(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """Run the first ``count`` stages on normalized images.

        Args:
            x: tensor ``(N, in_channels, H, W)``, already normalized.
            count: number of stages.

        Returns:
            The features after those stages (``x`` itself for 0).
        """
        raise NotImplementedError

    def forward_high(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run the stages from ``start`` on, giving ``high`` (``forward_stages`` gave ``x``).

        Args:
            x: the output of ``forward_stages(images, start)``.
            start: number of stages already run.

        Returns:
            ``Features.high`` of the images.
        """
        raise NotImplementedError


def expand_stats(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Extend per-RGB statistics to ``channels`` bands (cyclic repeat; average for one band).

    Args:
        values: three per-channel values.
        channels: number of bands.

    Returns:
        ``channels`` values.
    """
    if channels == 1:
        return (sum(values) / len(values),)
    return tuple(float(values[i % len(values)]) for i in range(channels))


def adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt an RGB stem kernel ``(out, 3, k, k)`` to ``in_channels`` bands.

    Args:
        weight: the pretrained stem kernel.
        in_channels: number of input bands.

    Returns:
        The kernel unchanged when it already has ``in_channels`` inputs; for one band the sum of
        the RGB kernels; otherwise the RGB kernels repeated cyclically times ``3 / in_channels``.
    """
    have = weight.shape[1]
    if have == in_channels or have != 3:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % have
    return weight[:, index] * (have / in_channels)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict (or a checkpoint holding one under ``state_dict`` or ``model``).

    Args:
        path: the weights file.

    Returns:
        Parameter name to tensor, on the CPU.

    Raises:
        KdmsiError: the file is missing, unreadable or holds no state dict.
    """
    if not path.is_file():
        raise KdmsiError(f"Weights file {path} does not exist; give the path of a .pth file.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise KdmsiError(
            f"Weights file {path} cannot be read as a PyTorch state dict; replace it with a valid "
            ".pth file, deleting it if it is a broken download."
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise KdmsiError(
            f"Weights file {path} does not hold a state dict of tensors; give a PyTorch .pth "
            "state dict of the backbone."
        )
    return dict(data)


@dataclass(frozen=True)
class WeightSource:
    """A state dict and where it came from.

    Attributes:
        state: parameter name to tensor.
        path: the file it was read from (named in messages).
    """

    state: dict[str, torch.Tensor]
    path: Path


def load_weights(
    model: Backbone,
    source: WeightSource,
    stem_key: str,
    drop_keys: tuple[str, ...],
) -> None:
    """Load weights strictly after dropping the classifier keys and adapting the stem.

    Args:
        model: the backbone.
        source: the state dict and its file.
        stem_key: name of the first convolution's weight, adapted to ``model.in_channels``.
        drop_keys: keys of the ImageNet classifier, dropped when present (no other key is ignored).

    Raises:
        KdmsiError: the state dict does not fit the model (missing, unexpected or misshapen keys).
    """
    state = {k: v for k, v in source.state.items() if k not in drop_keys}
    if stem_key in state:
        state[stem_key] = adapt_stem_weight(state[stem_key], model.in_channels)
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise KdmsiError(
            f"Weights file {source.path} does not fit backbone {model.name} ({problem}); give "
            f"a {model.name} state dict or leave the weights option out."
        )
    model.load_state_dict(state, strict=True)


def describe_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str:
    """Describe how a state dict differs from a model's, or return an empty string.

    Args:
        expected: the model's state dict.
        got: the state dict to load.

    Returns:
        A short phrase naming a few missing, unexpected and misshapen keys, or ``""``.
    """
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    misshapen = [
        f"{k} {tuple(got[k].shape)} in file vs {tuple(v.shape)} in model"
        for k, v in expected.items()
        if k in got and got[k].shape != v.shape
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", misshapen)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    return "; ".join(parts)


def warn(log: LogFn | None, message: str) -> None:
    """Send a warning to ``log`` or, without one, to :func:`warnings.warn`.

    Args:
        log: ``log(level, message)`` or None.
        message: the warning.
    """
    if log is None:
        warnings.warn(message, stacklevel=3)
    else:
        log("warning", message)


def info(log: LogFn | None, message: str) -> None:
    """Send an informational message to ``log`` when there is one.

    Args:
        log: ``log(level, message)`` or None.
        message: the message.
    """
    if log is not None:
        log("info", message)


def count_parameters(model: nn.Module) -> int:
    """Count the parameters of a module.

    Args:
        model: any module.

    Returns:
        The number of scalar parameters.
    """
    return sum(p.numel() for p in model.parameters())
