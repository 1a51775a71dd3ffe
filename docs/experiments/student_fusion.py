"""Issue 18: a student that sees only how the dates differ (``|B - A|``), not both dates.

The student's head reads both dates' features side by side (``cat``, the default since the
published method): it may learn what a changed tile *looks like* (roofs, bare soil, water)
instead of what changed, and with 48 tags a few scenes teach it. On new imagery that shows as
false alarms on unchanged buildings and fields, the product's weak point (at 48 tags its
changed-class precision through ``detect`` is under 0.35 on six of the nine families). A head on
the absolute difference of the two dates' features (``abs``, a choice the code already has:
``--student-fusion abs``) is blind to appearance that both dates share and symmetric in the
dates, the inductive bias of a change detector; the teacher is unchanged (``minus``, B - A).
Candidate, fixed before any of its models was trained (session 25):

- ``abs student``: ``TrainParams.student_fusion = "abs"``, every other setting the default of
  the time it runs. If the 800-steps trial (``steps_trial.py``) is adopted first, the candidate
  also trains ``--min-steps 800`` and the baseline is that trial's models
  (``/work/suite/steps800``); otherwise 60 epochs against session 21's models
  (``/work/suite/ff_all``). Models: ``OMP_NUM_THREADS=1 python docs/experiments/train_models.py
  /work/suite/abs_student SUITE DATA --seed S --part K/2 --student-fusion abs [--min-steps 800]``
  (same tiles, split, tags and training seed as the baseline's).
- ``cat student`` (the baseline): the same seeds' models of that baseline run.

Both are scored as the product (``pool_share.family_rows``: MSI with flips in bfloat16, the
student's own flat field, 5 x 5 CVA, Otsu over the held-out changed tags). Adoption rule (issue
18, fixed before the run): each family's training-tile F1 (the 48 tagged tiles) averaged over
seeds 0, 1 and 2; the mean over the 9 families must rise and no family may fall by more than
0.02. Stop after seed 0 if its mean gain on the training tiles is not positive. The test tiles
and each seed alone report. Usage::

    python docs/experiments/student_fusion.py BASELINE_RUN SUITE DATA --candidate
        /work/suite/abs_student --seeds 0 --only ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pool_share import score_two_runs

if __name__ == "__main__":
    score_two_runs(__doc__.splitlines()[0], ("cat student", "abs student"))
