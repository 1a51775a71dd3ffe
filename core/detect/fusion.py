"""Method ``kdmsi-cva``: the trained network's map combined with change vector analysis.

The student's map (with MSI) says *what kind* of change the tags describe; CVA's magnitude says
*where the colours changed at all*, a cue that needs no training and transfers to any imagery.
Their combination is the geometric mean ``sqrt(student x cva)``, where ``cva`` is the magnitude
averaged over a square of pixels (the model's ``cva_window``: 5 x 5 since session 13, 3 x 3 in
older model files), scaled so that the pair's own Otsu threshold (of the raw magnitude) sits at
0.5 and clipped to [0, 1]. A pixel is called changed only when both agree enough: the
student's false alarms on unchanged colours and CVA's on irrelevant colour change (season,
light) both fall. The average keeps CVA's pixel noise (speckle, misregistered edges) out of the
combined map: without it a tile's change broke into about 110 pieces on average, with 3 x 3
into about 30, with 5 x 5 into about 14, and F1 rose each time (sessions 12 and 13,
BENCHMARKS.md).

Issue 18's rule adopted it (BENCHMARKS.md, "Post-training rules"): on the training tiles of the 9
dataset families with 48 tags, F1 0.284 -> 0.340 on average (0.352 with the 3 x 3 average), no
family lower by more than 0.003; 5 x 5 instead of 3 x 3: +0.003, no family lower by more than 0.010.
The threshold is Otsu's on the held-out changed-tagged tiles of the combined map, as for the
student; no pixel label is involved.

Models trained since session 20 (``ModelInfo.cva_standardised``) take, for a pair of one band,
the difference of the two dates each standardised over the pair
(:class:`core.data.magnitude.Standardisation`), scaled by that magnitude's own Otsu threshold;
pairs of several bands and older models keep the plain difference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.data.magnitude import BINS, Standardisation, tile_magnitude
from core.data.otsu import otsu
from core.data.tilesets import TileSet
from core.detect.affinity import refine
from core.detect.flat_field import flatten_maps, flattened
from core.detect.tiled import Predictor

REFINE_BATCH = 16  # tiles refined at once (the weights take 3 MB per 128 px tile)


def smoothed(magnitude: torch.Tensor, window: int) -> torch.Tensor:
    """The magnitude ``[N, 1, H, W]`` averaged over ``window`` x ``window`` pixels (odd).

    Neighbourhoods cut by the image's edge average the pixels they hold.
    """
    pad = window // 2
    return F.avg_pool2d(magnitude, window, stride=1, padding=pad, count_include_pad=False)


def cva_share(
    a: torch.Tensor,
    b: torch.Tensor,
    threshold: float | torch.Tensor,
    window: int,
    standard: Standardisation | None = None,
) -> torch.Tensor:
    """CVA's part ``[N, 1, H, W]`` of batches in [0, 1]: smoothed magnitude / (2 threshold).

    With ``standard`` (one-band pairs), each date is standardised first.
    """
    a, b = a.float(), b.float()
    if standard is not None:
        a, b = standard.apply(a, b)
    magnitude = (b - a).pow(2).sum(dim=1, keepdim=True).sqrt()
    return (smoothed(magnitude, window) / (2.0 * threshold)).clamp(0.0, 1.0)


def fuse(student: torch.Tensor, cva: torch.Tensor) -> torch.Tensor:
    """The combined map: the geometric mean of the student's probability and CVA's map."""
    return (student.float().clamp(0.0, 1.0) * cva).sqrt()


def fused_predictor(
    student: Predictor,
    threshold: float,
    window: int,
    rounds: int = 0,
    standard: Standardisation | None = None,
    field: np.ndarray | None = None,
) -> Predictor:
    """A predictor of the combined map, for a pair whose CVA threshold is ``threshold``.

    With ``rounds``, each window's combined map is refined with its pixels' colours
    (:func:`core.detect.affinity.refine`, the model's ``affinity_rounds``). With ``standard``,
    the dates are standardised and ``threshold`` is that magnitude's. With ``field`` (the
    model's :meth:`~core.models.model_file.ModelInfo.field_for` its scales), the student's map
    is divided by it first (:func:`core.detect.flat_field.flatten`).
    """
    student = flattened(student, field)

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        combined = fuse(student(a, b), cva_share(a, b, threshold, window, standard))
        return refine(combined, torch.cat([a, b], dim=1), rounds)

    return run


def fuse_tiles(
    student: np.ndarray,
    tiles: TileSet,
    window: int,
    rounds: int = 0,
    standardised: bool = False,
    field: np.ndarray | None = None,
) -> np.ndarray:
    """The combined map ``[N, T, T]`` of tiles whose student map ``student`` is given.

    Each tile's CVA is averaged over ``window`` x ``window`` pixels and scaled by its own pair's
    threshold (:func:`tile_cue`, standardised for one-band pairs when ``standardised``, the
    model's ``cva_standardised``); with ``field``, the student's map is divided by that flat
    field first; with ``rounds``, each tile's combined map is then refined with its own
    colours, as ``detect`` refines each window.
    """
    cue, threshold = tile_cue(tiles, standardised)
    thresholds = torch.from_numpy(threshold)[:, None, None, None]
    magnitude = torch.from_numpy(cue)[:, None]
    cva = (smoothed(magnitude, window) / (2.0 * thresholds)).clamp(0.0, 1.0)
    prob = torch.from_numpy(flatten_maps(student, field))
    combined = fuse(prob, cva[:, 0])
    if rounds <= 0:
        return combined.numpy()
    out = np.empty(combined.shape, np.float32)
    for start in range(0, len(out), REFINE_BATCH):
        part = slice(start, start + REFINE_BATCH)
        pixels = np.concatenate([tiles.before[part], tiles.after[part]], axis=1)
        features = torch.from_numpy(pixels).float() / 255.0
        out[part] = refine(combined[part, None], features, rounds)[:, 0].numpy()
    return out


def tile_cue(tiles: TileSet, standardised: bool) -> tuple[np.ndarray, np.ndarray]:
    """The CVA magnitude ``[N, T, T]`` of tiles and each tile's pair threshold ``[N]``.

    Standardised (one-band pairs) when ``standardised`` and the tiles carry their pairs'
    standardisation (``TileSet.cva_standard``); the plain magnitude otherwise.
    """
    if standardised and tiles.cva_standard is not None:
        standard = tiles.cva_standard
        return tile_magnitude(tiles.before, tiles.after, standard[:, :4]), standard[:, 4]
    return tile_magnitude(tiles.before, tiles.after), pair_thresholds(tiles)


def pair_thresholds(tiles: TileSet) -> np.ndarray:
    """Per tile, the CVA threshold of its pair.

    The whole pair's, measured when the tiles were read (``TileSet.cva_threshold``); for tile
    sets read without that pass, Otsu's threshold over the valid pixels of the pair's tiles in
    the set (tiles named ``pair#id`` share a pair).
    """
    if tiles.cva_threshold is not None:
        return tiles.cva_threshold.astype(np.float32)
    pairs = np.asarray([name.split("#")[0] for name in tiles.names] or [""] * len(tiles))
    out = np.zeros(len(tiles), dtype=np.float32)
    for pair in np.unique(pairs):
        members = pairs == pair
        out[members] = tiles_threshold(tiles.subset(np.flatnonzero(members)))
    return out


def tiles_threshold(tiles: TileSet) -> float:
    """Otsu's threshold of the CVA magnitude over all valid pixels of ``tiles``."""
    top = float(np.sqrt(tiles.before.shape[1]))
    magnitude = tile_magnitude(tiles.before, tiles.after)[tiles.valid]
    hist = np.histogram(magnitude, bins=BINS, range=(0.0, top))[0]
    return max(otsu(hist, np.linspace(0.0, top, BINS + 1)), 1e-6)
