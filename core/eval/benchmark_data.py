"""The benchmark's data: every pair tiled, tags derived from masks, a seeded train/test split.

Pixel labels are read here for two purposes only: deriving the tile tags of training tiles and
scoring test tiles. The test tiles' masks never reach training or any choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.callbacks import Callbacks
from core.data.datasets import find_pairs, read_split_lists
from core.data.magnitude import pair_cue
from core.data.tags import tags_from_mask
from core.data.tiles import pair_tiles
from core.data.tilesets import TileSet, load_tiles
from core.detect.fusion import pair_thresholds
from core.errors import KdmsiError
from core.io.rasters import RasterPair, open_raster
from core.io.stretch import compute_stretch
from core.train.selection import stratified_split


@dataclass
class BenchmarkData:
    """Tiles of all pairs with their masks, split into train and test.

    Attributes:
        tiles: every tile of every pair.
        truth: bool ``[N, T, T]`` pixel reference of each tile (scoring only).
        train: indices of training tiles.
        test: indices of test tiles.
    """

    tiles: TileSet
    truth: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def cva_threshold(self) -> np.ndarray:
        """Per tile, the Otsu CVA threshold of its whole pair (label-free)."""
        return pair_thresholds(self.tiles)

    @property
    def summary(self) -> dict[str, object]:
        """Counts for the report."""
        return {
            "tiles": len(self.tiles),
            "tile_size": self.tiles.tile_size,
            "train": self.tiles.subset(self.train).counts,
            "test": self.tiles.subset(self.test).counts,
            "test_changed_pixel_fraction": float(self.truth[self.test].mean())
            if len(self.test)
            else 0.0,
        }


def _truth(label: Path, tileset: TileSet) -> np.ndarray:
    """Pixel reference of each tile (padding pixels False; they are invalid anyway)."""
    ds = open_raster(label, "label")  # keep the dataset alive while its band is used
    band = ds.GetRasterBand(1)
    size = tileset.tile_size
    truth = np.zeros((len(tileset), size, size), dtype=bool)
    for i, w in enumerate(tileset.windows):
        truth[i, : w.height, : w.width] = band.ReadAsArray(w.col, w.row, w.width, w.height) > 0
    return truth


def load_benchmark_data(
    roots: list[Path],
    tile: int,
    bands: tuple[int, ...] | None,
    train_fraction: float,
    seed: int,
    callbacks: Callbacks,
) -> BenchmarkData:
    """Tile every pair of the dataset folders and split the tiles.

    Pairs named in a folder's ``list/train.txt`` / ``list/test.txt`` go wholly to that side;
    the other tiles are split per class (stratified) with ``train_fraction`` for training.
    """
    sets, truths, sides = [], [], []
    for root in roots:
        lists = read_split_lists(root)
        for files in find_pairs(root):
            callbacks.check_canceled()
            if files.label is None:
                raise KdmsiError(
                    f"{files.before} has no mask in {root / 'label'}; the benchmark scores "
                    "against pixel labels, so add one or leave the pair out."
                )
            with RasterPair.open(files.before, files.after, bands, callbacks) as pair:
                tiles = pair_tiles(pair, tile)
                tags = tags_from_mask(files.label, tiles, pair.grid)
                stretch = compute_stretch(pair)
                cue = pair_cue(pair, stretch, callbacks.without_progress())
                labels = [tags[t.tile_id] for t in tiles]
                tileset = load_tiles(pair, stretch, tiles, labels, tile, files.key, cue)
            sets.append(tileset)
            truths.append(_truth(files.label, tileset))
            side = "train" if files.name in lists.get("train", set()) else ""
            side = "test" if files.name in lists.get("test", set()) else side
            sides.extend([side] * len(tileset))
            callbacks.info(f"{files.key}: {len(tileset)} tiles ({tileset.counts_text})")
    pooled = TileSet.concat(sets)
    sides_arr = np.asarray(sides)
    free = np.flatnonzero(sides_arr == "")
    held_train, held_test = stratified_split(pooled.labels[free], 1.0 - train_fraction, seed)
    train = np.sort(np.concatenate([np.flatnonzero(sides_arr == "train"), free[held_train]]))
    test = np.sort(np.concatenate([np.flatnonzero(sides_arr == "test"), free[held_test]]))
    return BenchmarkData(pooled, np.concatenate(truths), train, test)


def budget_subset(data: BenchmarkData, budget: int, seed: int) -> BenchmarkData:
    """The same split with only ``budget`` training tiles tagged: a user's few dozen tags.

    The tiles are drawn per class in proportion to the class counts (seeded; each class keeps at
    least one tile when it has one), from the training tiles only; the test tiles do not change,
    so budgets are scored on the same pixels. ``budget <= 0`` or a budget of at least the number
    of training tiles keeps them all.
    """
    train = data.train
    if budget <= 0 or budget >= len(train):
        return data
    labels = data.tiles.labels[train]
    rng = np.random.default_rng(seed + 7919)  # another stream than the train/test split's
    chosen = []
    classes = [c for c in (0, 1) if (labels == c).any()]
    for c in classes:
        members = train[labels == c]
        share = max(1, round(budget * len(members) / len(train)))
        chosen.append(rng.choice(members, size=min(share, len(members)), replace=False))
    picked = np.sort(np.concatenate(chosen))
    if len(picked) > budget:  # rounding gave one too many: drop one of the larger class
        larger = max(classes, key=lambda c: int((data.tiles.labels[picked] == c).sum()))
        drop = rng.choice(np.flatnonzero(data.tiles.labels[picked] == larger))
        picked = np.delete(picked, drop)
    return BenchmarkData(data.tiles, data.truth, picked, data.test)
