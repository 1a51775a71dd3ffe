"""Issue 18: augment the few tagged tiles across dates (date swap and per-date radiometry).

Training augments each tile by one of eight rotations and flips, applied to both dates alike.
With 48 tags a model sees few examples of the false alarm that dominates on new imagery: the two
dates differ in illumination, season or sensor gain while nothing changed. Candidate, fixed
before any model was trained with it (session 19):

- ``dates``: on the training batches only (never on the held-out tags that choose the epoch, the
  thresholds and the map), after the usual rotation and flip, each tile's dates are swapped with
  probability 1/2 (a change is a change in either order) and each date's pixels, independently,
  are multiplied by a gain drawn log-uniformly from [0.8, 1.25] and shifted by an offset drawn
  uniformly from [-16, 16] grey levels (of the stretched uint8 tile), then clipped to 0-255. The
  draws come from a generator seeded from the training's own, so runs are repeatable. Every
  other setting is the default.
- ``jitter`` (added in session 19 after ``dates`` failed, before any model was trained with it):
  the same gain and offset per date, without the swap. ``dates`` turned out to be impossible
  for the default teacher: its head is a bias-free 1 x 1 convolution of B - A, so swapping the
  dates negates its logits and a tag cannot be fitted in both orders (its loss stayed near
  ln 2 and its held-out ranking near chance).

Judged like ``backbone_trial.py``: each run's product map on tiles (the student with MSI and
flips combined with CVA's 5 x 5 average) cut at Otsu's threshold over its own held-out
changed-tagged tiles, against the suite's seed-0 models (``base``). Adoption rule (issue 18, fixed
before the run): on the *training* tiles' pixel labels, the mean changed-class F1 over families
must rise and no family may fall by more than 0.02; 48 tags, seed 0 first, a pass to be confirmed
on seeds 1 and 2 before the default changes. The test tiles only report. Usage::

    OMP_NUM_THREADS=1 python docs/experiments/date_augment.py train RUN SUITE DATA --part 0/2
    python docs/experiments/date_augment.py score BASE_RUN SUITE DATA --candidate RUN

(``train-jitter`` and ``score-jitter`` for the second candidate.)
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_models  # puts the project root on sys.path
from backbone_trial import candidate_run, family_rows, report
from suite_runs import score_families

import core.train.trainer as trainer_module
from core.data.tilesets import TileSet
from core.runtime.distributed import SINGLE, DistEnv
from core.train.batches import batches as plain_batches

GAIN = (0.8, 1.25)
OFFSET = 16.0


def jitter(dates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each tile of ``[n, bands, T, T]`` uint8 scaled by its own gain and shifted by its offset."""
    n = dates.shape[0]
    gain = np.exp(rng.uniform(np.log(GAIN[0]), np.log(GAIN[1]), (n, 1, 1, 1)))
    offset = rng.uniform(-OFFSET, OFFSET, (n, 1, 1, 1))
    return np.clip(dates.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)


def date_batches(
    tiles: TileSet,
    batch_size: int,
    rng: np.random.Generator | None,
    use_augment: bool,
    env: DistEnv = SINGLE,
    swap_dates: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The trainer's batches, with the candidate's swap and jitter on training batches."""
    extra = None if rng is None else np.random.default_rng(int(rng.integers(2**32)))
    for before, after, labels in plain_batches(tiles, batch_size, rng, use_augment, env):
        if extra is None or not use_augment:
            yield before, after, labels
            continue
        swap = (extra.random(len(labels)) < (0.5 if swap_dates else 0.0))[:, None, None, None]
        first, second = np.where(swap, after, before), np.where(swap, before, after)
        yield jitter(first, extra), jitter(second, extra), labels


if __name__ == "__main__":
    np.seterr(all="ignore")
    action = sys.argv.pop(1)
    if action.startswith("train"):
        swap = action == "train"  # the candidate, for this process only
        trainer_module.batches = partial(date_batches, swap_dates=swap)
        train_models.main()
    else:
        labels = ("base", "dates" if action == "score" else "jitter")
        rows, table = family_rows(candidate_run(), labels), partial(report, labels=labels)
        score_families(__doc__.splitlines()[0], rows, table, {labels[1]: labels[0]})
