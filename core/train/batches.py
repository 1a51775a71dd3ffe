"""Mini-batches of tiles with augmentation applied identically to both dates.

With several training processes (:mod:`core.runtime.distributed`) every rank draws the same
global batches and the same augmentation of every tile in them (one shared seeded generator), then
keeps its own contiguous part: the union of the ranks' parts is exactly the one-process batch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from core.data.tilesets import TileSet
from core.runtime.distributed import SINGLE, DistEnv, shard


def augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random 90-degree rotation and horizontal flip to every array (last two axes).

    The same transform is applied to both dates and to any pixel targets that go with them.
    """
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    return [_transform(array, k, flip) for array in arrays]


def _transform(array: np.ndarray, k: int, flip: bool) -> np.ndarray:
    array = np.rot90(array, k, axes=(-2, -1))
    return array[..., ::-1] if flip else array


def batches(
    tiles: TileSet,
    batch_size: int,
    rng: np.random.Generator | None,
    use_augment: bool,
    env: DistEnv = SINGLE,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(before, after, labels)`` uint8/float batches, shuffled when ``rng`` is given.

    Args:
        tiles: the tile set.
        batch_size: tiles per global batch (all ranks together).
        rng: shuffles and draws the augmentation (None: in order, no augmentation).
        use_augment: rotate and flip each tile (both dates alike).
        env: the ranks; each yields its part of every global batch. With several ranks a last
            batch smaller than the number of ranks is dropped (every rank needs a tile).

    Yields:
        Contiguous arrays ``[n, bands, T, T]`` (uint8) twice and labels ``[n]`` (float32).
    """
    order = np.arange(len(tiles))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if env.is_distributed and len(index) < env.world_size:
            return
        # every tile's transform of the global batch is drawn, so the stream is rank-independent
        transforms = (
            [(int(rng.integers(4)), bool(rng.integers(2))) for _ in index]
            if use_augment and rng is not None
            else None
        )
        part = shard(len(index), env)
        mine = index[part]
        a = np.empty((len(mine), *tiles.before.shape[1:]), dtype=tiles.before.dtype)
        b = np.empty_like(a)
        for row, i in enumerate(mine):
            k, flip = transforms[part.start + row] if transforms else (0, False)
            a[row] = _transform(tiles.before[i], k, flip)
            b[row] = _transform(tiles.after[i], k, flip)
        yield a, b, tiles.labels[mine].astype(np.float32)
