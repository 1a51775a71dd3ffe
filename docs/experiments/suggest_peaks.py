"""Issue 18: does Suggest beat random tags when it proposes the tiles where the map peaks highest?

Sessions 16 and 17 measured Suggest (24 random tags, train, then the 24 untagged training tiles
whose peak lies closest to the threshold) against 48 random tags: it lost (-0.033 on the training
tiles' product F1 at seed 0, 5 families), with recall up, precision down, a lower threshold and a
worse-ranking map on 3 of 5 families. Tiles near the threshold are the ambiguous ones (faint or
tiny change, mild distractors); with a first model trained on 24 tags they teach little.

The candidate, fixed before any of its models was trained (session 22): ``suggest-peaks``, the
same first round (24 random tags per class, the same seed), then the 24 untagged training tiles
whose peak of the same map is *highest*, highest first (:func:`core.detect.tile_ranking.
most_changed`): the model's clearest detections, which the tag confirms as changed, and its loudest
false alarms, which the tag corrects as unchanged (hard negatives; most of the product's polygons
are false alarms). This is relevance feedback, which beats uncertainty sampling in technology-
assisted review, where positives are rare too. Everything else as Suggest: the held-out fifth drawn
from all 48 tags, the defaults of ``kdmsi train``.

Two settings per family, each the product map (``kdmsi-cva`` whole-pair maps that ``detect``
wrote in the suite run, cut at the threshold ``detect`` reported), scored on the pixel labels of
all training tiles of the split (tagged or not) and, to report only, the test tiles:

- ``random``: 48 random tags (folder ``48``: links to session 21's ``/work/suite/ff_all`` runs,
  the session 18 models re-chosen by the current code, flat field included);
- ``suggest-peaks``: the candidate (folder ``48_suggest_peaks``), trained by
  ``kdmsi benchmark --strategies suggest-peaks`` with the current code.

Families: the 5 with more than 48 training tiles (LEVIR-CD, WHU-CD, both OMBRIA floods, single-
band Landsat / ALI); on the others both settings tag every training tile. Rule, fixed before the
run: issue 18's (the mean over the 5 families of the training tiles' F1 rises, no family falls by
more than 0.02), on every family's F1 averaged over the seeds. Three seeds decide: this session
runs seeds 0 and 1; if their mean gain is not positive the candidate is dropped (a third seed would
have to outweigh two), otherwise seed 2 decides and, when the rule holds on all three, ``kdmsi
suggest`` proposes the highest peaks instead of the closest to the threshold. Usage::

    python docs/experiments/suggest_peaks.py RUN SUITE DATA --seeds 0 1 --only FAMILY ...

Outcome (session 22, seeds 0, 1, 2): +0.021 on the training tiles' mean, worst family -0.015:
adopted (``kdmsi suggest`` proposes the highest peaks); the test tiles' mean -0.006, all of the
gain from the single-band family (BENCHMARKS.md, "Suggest: the tiles where the map sees the most
change").
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import suggest_rules  # noqa: E402
from suite_runs import score_families  # noqa: E402

SETTINGS = {"random": "", "suggest-peaks": "_suggest_peaks"}
RULES = {"suggest-peaks": "random"}
family_row = partial(suggest_rules.family_row, settings=SETTINGS)  # the same scoring
report = partial(suggest_rules.report, settings=SETTINGS, rules=RULES)


if __name__ == "__main__":
    score_families(__doc__.splitlines()[0], family_row, report, RULES)
