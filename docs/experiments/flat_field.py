"""Issue 18: the student's map divided by its own average over a window (a flat-field correction).

The student sees each window alone. Averaged over many tiles, its map (MSI and flips) is a bump:
on session 18's seed-0 models at 48 tags, label-free, the mean map over a family's tiles is
1.39x (LEVIR-CD), 1.72x (classic SAR pairs) and 2.11x (OSCD Mumbai) higher over a tile's
central half than over its border ring, flat for about 28 px from each edge and rising to a
plateau in the middle. Tiles are cut on a regular grid, so change is no more likely in a tile's
middle than at its edges: the bump is the network's (zero padding, an 8 x 8 map at stride 16,
4 x 4 at MSI's half scale), not the data's. It is also where the window lattice of ``detect``'s
maps comes from (issue 18: "the window grid must not show"), and it halves the response to
change near a window's edge. Imaging's answer to a fixed multiplicative response is a
flat-field correction.

Candidate, fixed before any map was scored with it (session 21), judged on the three seeds'
models of session 18 at 48 tags (``/work/suite/b48_all`` links ``b48_s0``, ``b48_s1``,
``b48_s2``):

- ``flat``: per model, the flat field ``F`` is the student's map (the product's scales and
  flips) averaged, pixel position by pixel position, over the valid pixels of the budget's
  training tiles (the 48 tagged tiles, held-out ones included; their images only, not their
  tags), averaged over the 8 rotations and reflections of the square tile, and divided by its
  own mean. The corrected student map is ``clip(S / F, 0, 1)``; it is combined with the CVA cue
  as the product is (``core.detect.fusion.fuse_tiles``: 5 x 5 average, pair threshold, the
  standardised difference for one-band pairs, geometric mean) and cut at Otsu's threshold over
  the held-out changed-tagged tiles of the corrected combined map. Against ``product``: the
  same without the correction, on the same student maps.

Adoption rule (issue 18, fixed before the run): each family's training-tile F1 averaged over
the three seeds; the mean over the 9 families must rise and no family may fall by more than
0.02. The test tiles only report, as do the student's maps alone (``student``, ``flat
student``: cut at Otsu's threshold of their own held-out changed tiles) and each flat field's
centre-to-ring ratio. If ``flat`` passes, ``detect`` divides each window's student map by the
model's flat field (stored in the model file) before combining; whether the lattice then leaves
the whole-pair maps is measured after, on ``window_rules.py``'s grid contrast. Usage::

    python docs/experiments/flat_field.py /work/suite/b48_all SUITE DATA --seeds 0 1 2

(RUN holds ``<family>/48/seed<S>/model.pt`` for each seed.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_rules import CPU, held_out_index
from suite_runs import mean_cells, score_families, verdict

from core.callbacks import Callbacks
from core.detect.flat_field import centre_to_ring
from core.detect.fusion import fuse_tiles
from core.detect.params import DetectParams
from core.detect.predictors import make_predictor, predict_tiles
from core.eval.benchmark_data import budget_subset, load_benchmark_data
from core.eval.metrics import ConfusionMatrix
from core.eval.suite import Family, slug
from core.models.model_file import load_model
from core.train.threshold_choice import otsu_on_changed_tiles

MAPS = ("product", "flat", "student", "flat student")
RULES = {"flat": "product"}
WINDOW = 5  # the product's CVA average


def flat_field(maps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The mean map ``[T, T]`` over valid pixels, symmetrised over the square's 8 symmetries.

    Divided by its own mean, so that ``maps / field`` keeps the maps' overall level.
    """
    total = (maps * valid).sum(axis=0)
    field = total / np.maximum(valid.sum(axis=0), 1)
    turns = [np.rot90(field, k) for k in range(4)]
    field = np.mean([*turns, *(t.T for t in turns)], axis=0)
    return (field / max(float(field.mean()), 1e-6)).astype(np.float32)


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """``family_row`` for ``score_families``: the product with and without the flat field."""
    data = load_benchmark_data(list(family.roots), family.tile, family.bands, 0.7, seed,
                               Callbacks())  # fmt: skip
    data = budget_subset(data, budget, seed)
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    info, states = load_model(model)
    detect = DetectParams()  # the product's scales and flips
    student = make_predictor("kdmsi", info, states, model, CPU, detect.scales, detect.flip)
    index = {"held": held_out_index(data, seed), "train": data.train, "test": data.test}
    maps = {part: predict_tiles(student, data.tiles.subset(i), CPU) for part, i in index.items()}
    field = flat_field(maps["train"], data.tiles.valid[data.train])
    scores = {"centre to ring": centre_to_ring(field)}
    for name in MAPS:
        made = {}
        for part, i in index.items():
            tiles = data.tiles.subset(i)
            raw = np.clip(maps[part] / field, 0, 1) if name.startswith("flat") else maps[part]
            made[part] = raw if name.endswith("student") else fuse_tiles(
                raw.astype(np.float32), tiles, WINDOW, standardised=True)  # fmt: skip
        cut = otsu_on_changed_tiles(data.tiles.subset(index["held"]), made["held"]).value
        for part in ("train", "test"):
            tiles = data.tiles.subset(index[part])
            matrix = ConfusionMatrix().update(made[part] >= cut, data.truth[index[part]],
                                              tiles.valid)  # fmt: skip
            scores[f"{part} {name}"] = matrix.as_dict()["f1"]
    return scores


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (each map on training and test tiles, the field's ratio) and the verdict."""
    lines = ["| family | " + " | ".join(f"{k}: train, test" for k in MAPS) + " | centre/ring |",
             "|---|" + "---|" * (len(MAPS) + 1)]  # fmt: skip
    for name, row in rows.items():
        cells = [f"{row[f'train {k}']:.3f}, {row[f'test {k}']:.3f}" for k in MAPS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['centre to ring']:.2f} |")
    lines.append("| mean | " + " | ".join(mean_cells(rows, MAPS)) + " | |")
    lines.extend(verdict(rows, rule, base, 4) for rule, base in RULES.items())
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_grad_enabled(False)
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
