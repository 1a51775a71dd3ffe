"""Refine a change map with the pair's own colours (pixel-adaptive refinement).

The student's map comes from features at stride 8, upsampled: its blobs spill over the edges of
the objects that changed. Weakly supervised segmentation refines such maps with the image itself:
each pixel repeatedly takes the average of its neighbours' values, weighted by how alike their
colours are, so the map's edges move to the image's edges. Here the colours are both dates'
bands stacked, so a pixel leans on neighbours that looked like it *and* changed like it.

For every pixel i the neighbours j are the 8 pixels at distance d along the rows, columns and
diagonals, for d in ``DILATIONS`` (48 neighbours; the window's edge is repeated outwards).
``s_ic`` is the standard deviation of channel c over i's neighbours; the logit of j is
``-mean_c((|f_ic - f_jc| / (COLOUR_WEIGHT s_ic + 1e-8))^2)`` and the weights are their softmax
over j. The map is replaced ``rounds`` times by its weighted neighbour average. No label and no
tag is involved; the settings were fixed before their trial
(``docs/experiments/affinity_refine.py``).

Method ``kdmsi-cva`` refines each window's combined map the model's ``affinity_rounds`` times
(:mod:`core.detect.fusion`). On the transfer suite's 9 families (48 tags) 10 rounds raised the
training tiles' F1 by 0.010 on seed 0 and 0.005 on seed 1 but lowered it by 0.005 on seed 2
(classic SAR -0.083), so issue 18's rule dropped it and models are written with 0
(``AFFINITY_ROUNDS`` in :mod:`core.models.model_file`; BENCHMARKS.md, session 18). It helps
aerial imagery and hurts 10 m Sentinel-2 cities and SAR, so ``kdmsi train --affinity-rounds 10``
opts in (``TrainParams.affinity_rounds``); a variant with distances in metres is a candidate
for a new trial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DILATIONS = (1, 2, 4, 8, 12, 24)
COLOUR_WEIGHT = 0.3
PAD = max(DILATIONS)


def offsets() -> list[tuple[int, int]]:
    """The 48 neighbour offsets ``(dy, dx)``: 8 directions at each of ``DILATIONS``."""
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    return [(dy * d, dx * d) for d in DILATIONS for dy, dx in steps]


def _shift(padded: torch.Tensor, dy: int, dx: int, height: int, width: int) -> torch.Tensor:
    """The neighbour at ``(dy, dx)`` of every pixel, from a tensor padded by ``PAD``."""
    return padded[..., PAD + dy : PAD + dy + height, PAD + dx : PAD + dx + width]


def affinity_weights(features: torch.Tensor) -> torch.Tensor:
    """Softmax weights ``[N, K, H, W]`` of each pixel's neighbours from features ``[N, C, H, W]``.

    Neighbours are visited one at a time, so memory holds the weights, not every neighbour's
    features.
    """
    features = features.float()
    height, width = features.shape[-2:]
    padded = F.pad(features, (PAD, PAD, PAD, PAD), mode="replicate")
    moves = offsets()
    total = torch.zeros_like(features)
    squares = torch.zeros_like(features)
    for dy, dx in moves:
        near = _shift(padded, dy, dx, height, width)
        total += near
        squares += near * near
    count = len(moves)
    mean = total / count
    spread = ((squares - count * mean * mean) / (count - 1)).clamp_min(0.0).sqrt()
    scale = COLOUR_WEIGHT * spread + 1e-8
    logits = torch.stack(
        [-((_shift(padded, dy, dx, height, width) - features).abs() / scale).pow(2).mean(dim=1)
         for dy, dx in moves],
        dim=1,
    )  # fmt: skip
    return torch.softmax(logits, dim=1)


def refine(prob: torch.Tensor, features: torch.Tensor, rounds: int) -> torch.Tensor:
    """The map ``[N, 1, H, W]`` after ``rounds`` colour-weighted neighbour averages.

    Args:
        prob: the change probability, one channel.
        features: the pixels' colours ``[N, C, H, W]`` (both dates' bands, in [0, 1]).
        rounds: how many averages (0 returns ``prob``).
    """
    if rounds <= 0:
        return prob
    weights = affinity_weights(features)
    height, width = prob.shape[-2:]
    values = prob.float()
    for _ in range(rounds):
        padded = F.pad(values, (PAD, PAD, PAD, PAD), mode="replicate")
        out = torch.zeros_like(values)
        for k, (dy, dx) in enumerate(offsets()):
            out += weights[:, k : k + 1] * _shift(padded, dy, dx, height, width)
        values = out
    return values
