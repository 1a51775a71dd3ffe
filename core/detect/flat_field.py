"""The student's average response over a window, and its map divided by it (a flat field).

The student sees each detection window alone, and on average its map is a bump: about 1.4-2.2
times higher over a window's central half than near its edges (session 18's models, label-free),
because of zero padding and its coarse maps (8 x 8 at stride 16 for a 128 px window, 4 x 4 at
MSI's half scale), not because change sits in the middle of tiles cut on a regular grid. The
bump draws the window lattice in ``detect``'s maps and halves the response to change near a
window's edge. Like a flat-field correction in imaging, the combined map of models trained since
session 21 divides the student's map by its own average over the tagged tiles before combining
it with CVA (issue 18's rule on the transfer suite: +0.011 on the training tiles' F1, no family
lower by more than 0.007; BENCHMARKS.md), and the student's own map (``--method kdmsi``) of
models trained since session 22 is divided too (+0.020, no family lower by more than 0.002 on
the seeds' means; :attr:`core.models.model_file.ModelInfo.student_flattened`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

FIELD_DECIMALS = 4  # as stored in model files
FIELD_FLOOR = 1e-6  # a position the student never responds at is left as it is, not divided by 0

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # as core.detect.tiled's


def flat_field(maps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The mean map ``[T, T]`` of tiles, symmetric under the square's 8 rotations and flips.

    Args:
        maps: the student's maps of tiles ``[N, T, T]``.
        valid: where each tile has data ``[N, T, T]``; other pixels do not count.

    Returns:
        The field divided by its own mean (so that dividing by it keeps the maps' level),
        rounded to :data:`FIELD_DECIMALS` decimals as model files store it.
    """
    total = (maps * valid).sum(axis=0)
    field = total / np.maximum(valid.sum(axis=0), 1)
    turns = [np.rot90(field, k) for k in range(4)]
    field = np.mean([*turns, *(turn.T for turn in turns)], axis=0)
    field = field / max(float(field.mean()), FIELD_FLOOR)
    return np.round(field, FIELD_DECIMALS).astype(np.float32)


def centre_to_ring(field: np.ndarray) -> float:
    """The field's mean over the central half of the square over its mean on the ring outside."""
    size = field.shape[0]
    quarter = size // 4
    inner = np.zeros(field.shape, bool)
    inner[quarter : size - quarter, quarter : size - quarter] = True
    return float(field[inner].mean() / max(float(field[~inner].mean()), FIELD_FLOOR))


def flatten(student: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """The student's map ``[N, 1, H, W]`` divided by the field, clipped to [0, 1].

    A field made on tiles of another size than the window (``detect --window``, a pair smaller
    than a tile) is resized to the window bilinearly.
    """
    size = tuple(student.shape[-2:])
    field = field.to(student.device, torch.float32)[None, None]
    if tuple(field.shape[-2:]) != size:
        field = F.interpolate(field, size=size, mode="bilinear", align_corners=False)
    return (student.float() / field.clamp_min(FIELD_FLOOR)).clamp(0.0, 1.0)


def flatten_maps(maps: np.ndarray, field: np.ndarray | None) -> np.ndarray:
    """Tiles' maps ``[N, T, T]`` divided by ``field`` and clipped; the maps as they are if None."""
    if field is None:
        return maps
    return flatten(torch.from_numpy(maps)[:, None], torch.from_numpy(field))[:, 0].numpy()


def flattened(student: Predictor, field: np.ndarray | None) -> Predictor:
    """A predictor of ``student``'s maps divided by ``field``; ``student`` itself if None."""
    if field is None:
        return student
    flat = torch.from_numpy(field)

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return flatten(student(a, b), flat)

    return run
