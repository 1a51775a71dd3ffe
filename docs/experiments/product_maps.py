"""The product's combined map of a budget's tiles, as the experiment scripts score it.

The student's map (the product's MSI scales and flips, in the autocast precision ``detect`` runs
on this CPU) is divided by its flat field over the budget's tagged tiles and combined with CVA
(5 x 5 average, standardised one-band dates), on the held-out tags, all the tagged (training)
tiles and the test tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from map_rules import CPU, held_out_index

from core.callbacks import Callbacks
from core.data.tilesets import TileSet
from core.detect.flat_field import flat_field
from core.detect.fusion import fuse_tiles
from core.detect.params import DetectParams
from core.detect.predictors import make_predictor, predict_tiles
from core.eval.benchmark_data import BenchmarkData, budget_subset, load_benchmark_data
from core.eval.metrics import ConfusionMatrix
from core.eval.suite import Family, slug
from core.models.model_file import load_model
from core.runtime.precision import autocast_dtype

WINDOW = 5  # the product's CVA average


def budget_data(family: Family, budget: int, seed: int) -> BenchmarkData:
    """The family's tiles and split of ``seed``, its training tiles cut to the budget's tags."""
    data = load_benchmark_data(list(family.roots), family.tile, family.bands, 0.7, seed,
                               Callbacks())  # fmt: skip
    return budget_subset(data, budget, seed)


def model_path(run: Path, family: Family, budget: int, seed: int) -> Path:
    """A suite run's model file of one family, budget and seed."""
    return run / slug(family.name) / slug(str(budget)) / f"seed{seed}" / "model.pt"


@dataclass
class ProductMaps:
    """The combined maps of the tile sets ``held``, ``train`` (all tagged) and ``test``."""

    data: BenchmarkData
    index: dict[str, np.ndarray]
    made: dict[str, np.ndarray]

    def tiles(self, part: str) -> TileSet:
        """The tiles of ``part``."""
        return self.data.tiles.subset(self.index[part])

    def f1(self, part: str, cut: float) -> float:
        """The changed-class F1 of ``part``'s map cut at ``cut``, against its pixel labels."""
        index = self.index[part]
        matrix = ConfusionMatrix().update(
            self.made[part] >= cut, self.data.truth[index], self.data.tiles.valid[index]
        )
        return matrix.as_dict()["f1"]


def product_maps(data: BenchmarkData, model: Path, seed: int) -> ProductMaps:
    """The product's combined maps of ``data``'s held-out, tagged and test tiles."""
    info, states = load_model(model)
    detect = DetectParams()  # the product's scales and flips
    dtype = autocast_dtype("auto", CPU)
    student = make_predictor("kdmsi", info, states, model, CPU, detect.scales, detect.flip,
                             dtype=dtype)  # fmt: skip
    index = {"held": held_out_index(data, seed), "train": data.train, "test": data.test}
    maps = {part: predict_tiles(student, data.tiles.subset(i), CPU) for part, i in index.items()}
    field = flat_field(maps["train"], data.tiles.valid[data.train])
    made = {
        part: fuse_tiles(maps[part], data.tiles.subset(i), WINDOW, standardised=True, field=field)
        for part, i in index.items()
    }
    return ProductMaps(data, index, made)
