"""Multiscale Sigmoid Inference (MSI) and the normalized-CAM probability of the CAM-only ablation.

MSI, as published: for each scale, resize both images (bilinear), run the student on the images
and on their horizontal flips, take the sigmoid, average the two (the flipped map flipped back),
upsample bilinearly to the input size; the change probability is the mean over the scales.

Both functions take images in [0, 1] and run under :func:`torch.inference_mode` with the model in
evaluation mode (its previous mode is restored afterwards); they also work when called inside an
existing ``inference_mode`` or ``no_grad`` block. Their results are inference tensors: clone them
before using them in a computation that records gradients.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.choices import DEFAULTS

MSI_SCALES: tuple[float, ...] = DEFAULTS.scales
CAM_EPS = 1e-5
MAX_PIXELS = 1_000_000


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in evaluation mode and inference mode, restoring its mode on exit.

    Args:
        model: the module.

    Yields:
        The module, in evaluation mode.
    """
    was_training = model.training
    if was_training:  # eval() walks every submodule: skipped for networks already evaluating
        model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        if was_training:
            model.train()


def scaled_size(size: Sequence[int], scale: float) -> tuple[int, int]:
    """Size ``(H, W)`` times ``scale``, rounded, at least one pixel.

    Args:
        size: ``(H, W)``.
        scale: the factor.

    Returns:
        The scaled ``(h, w)``.
    """
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _chunked(
    model: nn.Module, a: torch.Tensor, b: torch.Tensor, max_pixels: int | None
) -> torch.Tensor:
    """``model(a, b)`` in batches of at most ``max_pixels`` pixels per date (one image at least)."""
    per_image = a.shape[-2] * a.shape[-1]
    step = a.shape[0] if not max_pixels else max(1, max_pixels // per_image)
    if step >= a.shape[0]:
        return model(a, b)
    return torch.cat([model(a[i : i + step], b[i : i + step]) for i in range(0, len(a), step)])


def _sigmoid_at_scale(
    model: nn.Module,
    a: torch.Tensor,
    b: torch.Tensor,
    scale: float,
    flip: bool,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Sigmoid of the model's map at one scale (flip-averaged), upsampled to the input size."""
    size = tuple(a.shape[-2:])
    small = scaled_size(size, scale)
    a_s, b_s = _resize(a, small), _resize(b, small)
    n = a.shape[0]
    if flip:
        a_s = torch.cat([a_s, a_s.flip(-1)], dim=0)
        b_s = torch.cat([b_s, b_s.flip(-1)], dim=0)
    prob = torch.sigmoid(_chunked(model, a_s, b_s, max_pixels).float())
    if flip:
        prob = 0.5 * (prob[:n] + prob[n:].flip(-1))
    return _resize(prob, size)


def msi(
    model: nn.Module,
    a: torch.Tensor,
    b: torch.Tensor,
    scales: Sequence[float] = MSI_SCALES,
    flip: bool = True,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Change probability by Multiscale Sigmoid Inference.

    ``scales=(1.0,)`` with ``flip=False`` gives the plain single-scale sigmoid of the map,
    upsampled bilinearly to the input size. ``max_pixels`` bounds the memory of one forward
    pass: the (resized, flip-doubled) batch is run in parts of at most that many pixels per
    date (one image at least), with the same result.

    Args:
        model: the student (a :class:`core.models.cam.SiameseCAM`, or any module whose
            ``forward(a, b)`` returns map logits ``[N, 1, h, w]``).
        a: date A images ``[N, C, H, W]`` in [0, 1].
        b: date B images, same shape.
        scales: resize factors of the inputs.
        flip: also run on the horizontal flips and average.
        max_pixels: pixels per date of one forward pass; None runs each scale in one pass.

    Returns:
        Change probability ``[N, 1, H, W]`` in [0, 1], float32.

    Raises:
        ValueError: no scale, or a scale that is not positive.
    """
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"MSI needs one or more positive scales, not {tuple(scales)}.")
    with evaluating(model):
        total = None
        for scale in scales:
            prob = _sigmoid_at_scale(model, a, b, float(scale), flip, max_pixels)
            total = prob if total is None else total + prob
        return total / len(scales)


def cam_probability(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Normalized CAM of one model (the CAM-only ablation, e.g. of the teacher).

    ``ReLU(cam)`` divided by its spatial maximum per image (plus a small epsilon), upsampled
    bilinearly to the input size. As every normalized CAM it is relative: an unchanged image's
    strongest response still reaches about 1.

    Args:
        model: a :class:`core.models.cam.SiameseCAM` (teacher or student).
        a: date A images ``[N, C, H, W]`` in [0, 1].
        b: date B images, same shape.

    Returns:
        Values ``[N, 1, H, W]`` in [0, 1], float32.
    """
    with evaluating(model):
        cam = F.relu(model(a, b).float())
        cam = cam / (cam.amax(dim=(2, 3), keepdim=True) + CAM_EPS)
        return _resize(cam, tuple(a.shape[-2:]))
