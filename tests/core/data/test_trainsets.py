"""Tests of building training tile sets from dataset folders and from tag layers."""

from __future__ import annotations

import numpy as np
import pytest

from core.callbacks import Callbacks
from core.data.datasets import PairFiles
from core.data.tags import write_tags
from core.data.tiles import pair_tiles
from core.data.trainsets import check_tags, tiles_from_tag_layer, tiles_of_pair
from core.errors import KdmsiError
from core.io.rasters import RasterPair


@pytest.fixture
def files(tmp_path, write_raster, scene):
    """A 70 x 64 pair whose mask marks change in tile 1 (top right) only."""
    folder = tmp_path / "ds"
    for sub in ("A", "B", "label"):
        (folder / sub).mkdir(parents=True)
    before = scene(70, 64, seed=1)
    after = before.copy()
    after[:, 5:15, 40:50] = 255
    label = np.zeros((64, 70), dtype=np.uint8)
    label[5:15, 40:50] = 255
    return PairFiles(
        "p",
        write_raster(folder / "A" / "p.tif", before),
        write_raster(folder / "B" / "p.tif", after),
        write_raster(folder / "label" / "p.tif", label),
    )


def test_tiles_of_pair_derive_tags_from_the_mask(files):
    tiles, grid_tiles = tiles_of_pair(files, 32, None, Callbacks())
    # 70 px wide: columns at 0, 32 and a 6 px sliver that is dropped; 64 px high: 2 rows.
    assert len(tiles) == len(grid_tiles) == 4
    assert list(tiles.labels) == [0, 1, 0, 0]
    assert tiles.names == [f"ds/p#{t.tile_id}" for t in grid_tiles]
    assert tiles.tile_size == 32 and tiles.before.shape == (4, 3, 32, 32)
    assert tiles.counts == {"changed": 1, "unchanged": 3}


def test_tiles_of_pair_with_chosen_bands(files):
    tiles, _ = tiles_of_pair(files, 32, (2,), Callbacks())
    assert tiles.before.shape == (4, 1, 32, 32)


def test_tiles_of_pair_without_mask(files):
    unlabelled = PairFiles(files.name, files.before, files.after, None)
    with pytest.raises(KdmsiError, match="no mask") as err:
        tiles_of_pair(unlabelled, 32, None, Callbacks())
    assert str(files.before) in str(err.value)


def write_layer(path, files, labels, **meta_overrides):
    with RasterPair.open(files.before, files.after) as pair:
        tiles = pair_tiles(pair, 32)
        meta = {
            "before": files.before,
            "after": files.after,
            "tile": 32,
            "stride": 32,
            "width": pair.grid.width,
            "height": pair.grid.height,
            **meta_overrides,
        }
        write_tags(path, pair.grid, tiles, labels, meta)
    return path


def test_tag_layer_gives_only_the_tagged_tiles(files, tmp_path):
    layer = write_layer(tmp_path / "tags.gpkg", files, {0: 0, 1: 1, 3: 0})
    tiles = tiles_from_tag_layer(files.before, files.after, layer, None, Callbacks())
    assert len(tiles) == 3
    assert list(tiles.labels) == [0, 1, 0]
    assert tiles.names == ["p#0", "p#1", "p#3"]
    assert tiles.tile_size == 32
    check_tags(tiles, str(layer))


def test_tag_layer_of_another_raster_size(files, tmp_path):
    layer = write_layer(tmp_path / "tags.gpkg", files, {0: 1}, width=100)
    with pytest.raises(KdmsiError, match="100x64") as err:
        tiles_from_tag_layer(files.before, files.after, layer, None, Callbacks())
    assert str(layer) in str(err.value) and str(files.before) in str(err.value)


def test_tag_layer_without_tags(files, tmp_path):
    layer = write_layer(tmp_path / "tags.gpkg", files, {})
    with pytest.raises(KdmsiError, match="no tagged tile") as err:
        tiles_from_tag_layer(files.before, files.after, layer, None, Callbacks())
    assert str(layer) in str(err.value)


def test_tag_layer_with_one_class_fails_the_check(files, tmp_path):
    layer = write_layer(tmp_path / "tags.gpkg", files, {0: 1, 1: 1})
    tiles = tiles_from_tag_layer(files.before, files.after, layer, None, Callbacks())
    with pytest.raises(KdmsiError, match="2 changed and 0 unchanged"):
        check_tags(tiles, str(layer))
