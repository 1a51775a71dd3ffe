"""Issues 18 and 20: does MSI need its horizontal flips (half of its cost) on the transfer suite?

MSI (as published) runs the student at 4 scales (0.5, 1, 1.25, 2) on each window and on its
horizontal flip, and averages the 8 sigmoid maps. On 2 CPU cores it runs at 0.104 MP/s against
issue 20's target of 0.15 (BENCHMARKS.md, "Performance"): the network is nearly all the time,
and the flips are half of the network's work (827.5 GFLOP per megapixel with them, 413.8
without; scale 2 alone is 242.9 of the 413.8). Flip averaging is a test-time augmentation whose
worth was never measured here. Candidates, fixed before any map was scored (session 22):

- ``no flips``: the mean over the 4 scales of the plain sigmoid maps (2x fewer network passes);
- ``no flip at 2``: flips at scales 0.5, 1 and 1.25, none at scale 2 (1.42x fewer).

Each is scored as the product is (``kdmsi-cva``): its own flat field over the 48 tagged tiles
(``core.detect.flat_field.flat_field`` of that candidate's map), the combination with CVA (5 x
5 average, standardised one-band dates) of the student's map divided by it, cut at Otsu's
threshold over the held-out changed tiles of that combined map; ``product`` is the same with the
flips at every scale (today's map). All maps in bfloat16 autocast, as ``detect`` runs on this
CPU. Rule, fixed before the run: issue 18's (training tiles: the 48 tagged tiles' F1, mean over
the 9 families rises, no family falls by more than 0.02), judged on every family's F1 averaged
over seeds 0, 1 and 2 and on each seed alone; a candidate that passes all four becomes the
default MSI (if both do, the faster); the test tiles report. Usage::

    python docs/experiments/msi_flips.py /work/suite/b48_all SUITE DATA --seeds 0 1 2 --only ...

(RUN holds ``<family>/48/seed<S>/model.pt`` for each seed.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_rules import CPU, held_out_index  # noqa: E402
from suite_runs import score_families, seed_verdicts, table_lines, train_test  # noqa: E402

from core.callbacks import Callbacks  # noqa: E402
from core.data.tilesets import TileSet  # noqa: E402
from core.detect.flat_field import flat_field  # noqa: E402
from core.detect.fusion import fuse_tiles  # noqa: E402
from core.detect.msi import MSI_SCALES  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.eval.benchmark_data import budget_subset, load_benchmark_data  # noqa: E402
from core.eval.metrics import ConfusionMatrix  # noqa: E402
from core.eval.suite import Family, slug  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.runtime.precision import autocast_dtype  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402

FLIPPED_AT = {  # candidate: the scales whose flips are averaged in
    "product": MSI_SCALES,
    "no flips": (),
    "no flip at 2": tuple(s for s in MSI_SCALES if s < 2.0),
}
RULES = {"no flips": "product", "no flip at 2": "product"}
WINDOW = 5  # the product's CVA average


def scale_maps(model: Path, tiles: TileSet) -> dict[tuple[float, bool], np.ndarray]:
    """The student's sigmoid map of each scale, plain and of the flipped pair (flipped back)."""
    info, states = load_model(model)
    dtype = autocast_dtype("auto", CPU)
    out = {}
    for scale in MSI_SCALES:
        one = make_predictor("kdmsi", info, states, model, CPU, (scale,), False, dtype=dtype)
        out[scale, False] = predict_tiles(one, tiles, CPU)
        mirrored = lambda a, b, p=one: p(a.flip(-1), b.flip(-1)).flip(-1)  # noqa: E731
        out[scale, True] = predict_tiles(mirrored, tiles, CPU)
    return out


def candidate(maps: dict[tuple[float, bool], np.ndarray], flipped: tuple[float, ...]) -> np.ndarray:
    """MSI: the mean over the scales, flip-averaged at the scales in ``flipped``."""
    per_scale = [
        0.5 * (maps[s, False] + maps[s, True]) if s in flipped else maps[s, False]
        for s in MSI_SCALES
    ]
    return np.mean(per_scale, axis=0).astype(np.float32)


def family_row(family: Family, run: Path, budget: int, seed: int) -> dict[str, float]:
    """``family_row`` for ``score_families``: the product map of each MSI candidate."""
    data = load_benchmark_data(list(family.roots), family.tile, family.bands, 0.7, seed,
                               Callbacks())  # fmt: skip
    data = budget_subset(data, budget, seed)
    model = run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"
    index = {"held": held_out_index(data, seed), "train": data.train, "test": data.test}
    maps = {part: scale_maps(model, data.tiles.subset(i)) for part, i in index.items()}
    scores = {}
    for name, flipped in FLIPPED_AT.items():
        student = {part: candidate(maps[part], flipped) for part in index}
        field = flat_field(student["train"], data.tiles.valid[data.train])
        made = {}
        for part, i in index.items():
            tiles = data.tiles.subset(i)
            made[part] = fuse_tiles(student[part], tiles, WINDOW, standardised=True, field=field)
        cut = otsu_on_changed_tiles(data.tiles.subset(index["held"]), made["held"]).value
        for part in ("train", "test"):
            matrix = ConfusionMatrix().update(
                made[part] >= cut, data.truth[index[part]], data.tiles.valid[index[part]]
            )
            scores[f"{part} {name}"] = matrix.as_dict()["f1"]
    return scores


def report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table (each candidate on training and test tiles) and the verdicts."""
    lines = table_lines(rows, list(FLIPPED_AT), "train, test", train_test)
    lines.extend(seed_verdicts(rows, RULES))
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_grad_enabled(False)
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
