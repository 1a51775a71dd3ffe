"""The map ``detect --method auto`` runs, and whether the held-out tags show it beats chance.

After training, four candidate maps are computed on the tiles held out from training: ``kdmsi-cva``
(the student with Multiscale Sigmoid Inference combined with change vector analysis,
:mod:`core.detect.fusion`), ``kdmsi`` (the student alone, as ``detect`` runs it), ``cam`` (the
teacher's class activation map) and ``cva`` (change vector analysis, nothing learned). A tile's
score is its mean value (:func:`core.detect.tile_ranking.tile_scores`), and each candidate is
measured by the AUC of those scores against the held-out tags: how well it tells changed tiles from
unchanged ones.

The rule (issue 18, adopted in session 16 under the issue's rule on the training tiles of all 9
families and 3 seeds, BENCHMARKS.md "Three seeds on all 9 families"):

- ``auto`` always runs the default, ``kdmsi-cva`` (first of ``CANDIDATES``). Until session 16 it
  ran another candidate whose AUC was higher by ``MARGIN``; with 48 tags, of which 5 to 10 are
  held out, that choice left the default 9 times in 27 runs and hurt 5 of them (ranking tiles is
  not drawing the change pixels), and always running the default raised the training tiles'
  mean F1 by 0.017 with no family falling by more than 0.003. Models trained before keep their
  choice.
- The candidates are still measured and stored. A candidate that ranks the held-out tags better
  than the default by ``MARGIN`` *and* beats chance is the choice's ``leader``: the log names it
  so that the user can compare it (``detect --method NAME``), but it is not used by itself.
- A map *beats chance* when a random ranking of as many held-out tags would reach its AUC at
  most 5 % of the time (one-sided; the exact Mann-Whitney distribution for up to ``EXACT_PAIRS``
  changed x unchanged pairs, its normal approximation beyond). With 2 + 2 held-out tags no AUC
  can (a perfect ranking happens by chance once in six), with 5 + 5 it takes 0.84. When the
  default map does not beat chance, the model is marked unreliable: the log says that the tags
  are too few or too inconsistent to learn from and how many more to tag.
- Without held-out tags nothing can be measured: the default is used and the log says so.

Only tile tags are used here, never pixel labels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from core.callbacks import Callbacks
from core.data.magnitude import tile_magnitude
from core.data.tilesets import TileSet
from core.detect.flat_field import flatten_maps
from core.detect.fusion import fuse_tiles
from core.detect.msi import MSI_SCALES
from core.detect.params import METHOD_NAMES as NAMES
from core.detect.predictors import make_predictor, predict_tiles
from core.detect.tile_ranking import tile_scores
from core.models.model_file import load_model, save_model
from core.train.selection import roc_auc
from core.train.threshold_choice import otsu_on_changed_tiles

MARGIN = 0.05
ALPHA = 0.05
Z_ONE_SIDED = 1.645  # the normal quantile of 1 - ALPHA
EXACT_PAIRS = 40_000
CANDIDATES = ("kdmsi-cva", "kdmsi", "cam", "cva")
DEFAULT = CANDIDATES[0]


@dataclass(frozen=True)
class MethodChoice:
    """The map ``auto`` runs, every candidate's AUC on the held-out tags and the verdict."""

    method: str
    auc: dict[str, float]
    changed: int
    unchanged: int
    reliable: bool
    reason: str

    @property
    def chance_bound(self) -> float | None:
        """The AUC a map needs to beat chance on this many held-out tags (None: unreachable)."""
        return chance_bound(self.changed, self.unchanged)

    @property
    def leader(self) -> str | None:
        """A candidate that beats chance and ranks the tags better than ``method`` by the margin."""
        scores = _scores(self.auc)
        best = max(CANDIDATES, key=lambda name: scores[name])  # ties: the first in CANDIDATES
        bound = self.chance_bound
        if best == self.method or bound is None or scores[best] < bound:
            return None
        return best if scores[best] >= scores[self.method] + MARGIN else None


def _scores(auc: dict[str, float]) -> dict[str, float]:
    """The AUCs with NaN (a map that could not be measured) counted as chance."""
    return {name: (value if math.isfinite(value) else 0.5) for name, value in auc.items()}


def chance_bound(changed: int, unchanged: int) -> float | None:
    """The least AUC that beats chance with this many held-out tags (None: none can).

    A random ranking reaches that AUC at most ``ALPHA`` of the time: exactly (Mann-Whitney U
    distribution, no ties) up to ``EXACT_PAIRS`` pairs, by the normal approximation beyond.
    """
    pairs = changed * unchanged
    if pairs == 0:
        return None
    if pairs > EXACT_PAIRS:
        std = math.sqrt((changed + unchanged + 1) / (12.0 * pairs))
        return min(0.5 + Z_ONE_SIDED * std, 1.0)
    counts = u_distribution(changed, unchanged)
    tail = np.cumsum(counts[::-1])[::-1] / counts.sum()  # P(U >= u) for u = 0 .. pairs
    passing = np.flatnonzero(tail <= ALPHA)
    return float(passing[0] / pairs) if passing.size else None


def u_distribution(m: int, n: int) -> np.ndarray:
    """How many of the C(m + n, m) orderings give each Mann-Whitney U from 0 to m * n.

    The counts are the coefficients of the Gaussian binomial coefficient, the product over
    i = 1..m of (1 - q^(n+i)) / (1 - q^i), built one factor at a time (float64: only ratios of
    counts are used).
    """
    poly = np.zeros(m * n + 1, dtype=np.float64)
    poly[0] = 1.0
    for i in range(1, m + 1):
        times = poly.copy()
        times[n + i :] -= poly[: len(poly) - n - i]  # x (1 - q^(n+i))
        for start in range(i):  # / (1 - q^i): a running sum along every i-th coefficient
            times[start::i] = np.cumsum(times[start::i])
        poly = times
    return poly


def decide(auc: dict[str, float], changed: int, unchanged: int) -> MethodChoice:
    """Apply the module's rule to the candidates' AUCs (NaN counts as chance)."""
    scores = _scores(auc)
    bound = chance_bound(changed, unchanged)
    reliable = bound is not None and scores[DEFAULT] >= bound
    others = ", ".join(f"{name} {scores[name]:.2f}" for name in CANDIDATES if name != DEFAULT)
    reason = (
        f"it is the default map (on the {changed + unchanged} held-out tags: AUC "
        f"{scores[DEFAULT]:.2f}; {others})"
    )
    return MethodChoice(DEFAULT, dict(auc), changed, unchanged, reliable, reason)


def leader_sentence(choice: MethodChoice) -> str | None:
    """The note for a model whose held-out tags another map ranks clearly better (None: none)."""
    leader = choice.leader
    if leader is None:
        return None
    scores = _scores(choice.auc)
    return (
        f"On the {choice.changed + choice.unchanged} held-out tags {NAMES[leader]} ranked the "
        f"tiles better (AUC {scores[leader]:.2f} against {scores[choice.method]:.2f}). Detect "
        f"still runs {NAMES[choice.method]}: in the benchmark such a lead on a few tags did not "
        f"carry over to the change pixels. To compare, run detect with --method {leader}."
    )


def tags_needed(choice: MethodChoice, tagged: int, held_out_fraction: float) -> int:
    """About how many more tags would let an AUC like the best one here beat chance.

    Solves the chance bound for the number of held-out tags per class that the best AUC would
    pass, scales it up by the held-out fraction, and never asks for fewer than ``tagged`` (double
    the tags) or more than ten times that.
    """
    best = max((v for v in choice.auc.values() if math.isfinite(v)), default=0.5)
    margin = max(best - 0.5, 0.05)
    per_class = Z_ONE_SIDED**2 * 2.0 / (12.0 * margin**2)
    total = 2.0 * per_class / max(held_out_fraction, 0.05)
    return int(min(max(total - tagged, tagged), 10 * tagged))


def candidate_maps(
    model_path: Path, tiles: TileSet, device: torch.device, dtype: torch.dtype | None
) -> dict[str, np.ndarray]:
    """The candidates' maps ``[N, T, T]`` of ``tiles`` (CVA as its raw magnitude)."""
    info, states = load_model(model_path)
    maps = {}
    for method in ("kdmsi", "cam"):
        predictor = make_predictor(method, info, states, model_path, device, dtype=dtype)
        maps[method] = predict_tiles(predictor, tiles, device)
    maps["kdmsi-cva"] = fuse_tiles(
        maps["kdmsi"], tiles, info.cva_window, info.affinity_rounds, info.cva_standardised,
        info.field_for(MSI_SCALES),
    )  # fmt: skip
    maps["kdmsi"] = flatten_maps(maps["kdmsi"], info.student_field(MSI_SCALES))
    maps["cva"] = tile_magnitude(tiles.before, tiles.after)
    return maps


def choose_method(
    model_path: Path,
    held_out: TileSet | None,
    device: torch.device,
    callbacks: Callbacks,
    dtype: torch.dtype | None = None,
    tagged: int = 0,
    held_out_fraction: float = 0.2,
) -> MethodChoice | None:
    """Measure the candidates on ``held_out``, store the choice in the model file and report it.

    Also stores the teacher CAM's threshold (Otsu on the held-out changed-tagged tiles, the
    student's rule). Returns None when no tags were held out; the default map is then stored
    without a measurement.
    """
    if held_out is None or len(held_out) == 0:
        callbacks.warning(
            "No tags were held out, so whether the trained network beats change vector analysis "
            f"could not be checked; detect will use {NAMES[DEFAULT]}."
        )
        info, states = load_model(model_path)
        unmeasured = {"method": DEFAULT, "reason": "no tags were held out to compare the maps"}
        save_model(model_path, replace(info, method_choice=unmeasured), states)
        return None
    maps = candidate_maps(model_path, held_out, device, dtype)
    labels = held_out.labels
    auc = {name: roc_auc(tile_scores(prob, held_out.valid), labels) for name, prob in maps.items()}
    choice = decide(auc, int(labels.sum()), int(len(labels) - labels.sum()))
    info, states = load_model(model_path)
    cam_threshold = otsu_on_changed_tiles(held_out, maps["cam"]).value
    bound = choice.chance_bound
    summary = {
        **asdict(choice),
        "chance_bound": None if bound is None else round(bound, 4),
        "leader": choice.leader,
    }
    save_model(
        model_path, replace(info, threshold_cam=cam_threshold, method_choice=summary), states
    )
    callbacks.info(f"Map used by detect: {NAMES[choice.method]}, because {choice.reason}.")
    if (note := leader_sentence(choice)) is not None:
        callbacks.info(note)
    if not choice.reliable:
        callbacks.warning(too_few_sentence(choice, tagged, held_out_fraction))
    return choice


def too_few_sentence(choice: MethodChoice, tagged: int, held_out_fraction: float) -> str:
    """The warning for a model whose map does not beat chance on the held-out tags."""
    bound = choice.chance_bound
    need = (
        f"{bound:.2f} needed"
        if bound is not None
        else f"with {choice.changed} + {choice.unchanged} held-out tiles no ranking can show it"
    )
    return (
        f"The map detect runs ({NAMES[choice.method]}) does not tell the {choice.changed} changed "
        f"from the {choice.unchanged} unchanged held-out tiles clearly better than chance (AUC "
        f"{_scores(choice.auc)[choice.method]:.2f}, {need}): the tags are too few or too "
        f"inconsistent to learn from. Tag about {tags_needed(choice, tagged, held_out_fraction)} "
        "more tiles (kdmsi suggest proposes which) and train again."
    )
