"""Mini-batches of tiles with augmentation applied identically to both dates."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from core.samples import TileSet


def augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random 90-degree rotation and horizontal flip to every array (last two axes).

    The same transform is applied to both dates and to any pixel targets that go with them.
    """
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for array in arrays:
        array = np.rot90(array, k, axes=(-2, -1))
        out.append(array[..., ::-1] if flip else array)
    return out


def batches(
    tiles: TileSet, batch_size: int, rng: np.random.Generator | None, use_augment: bool
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(before, after, labels)`` uint8/float batches, shuffled when ``rng`` is given."""
    order = np.arange(len(tiles))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        a, b = tiles.before[index], tiles.after[index]
        if use_augment and rng is not None:
            pairs = [augment([a[i], b[i]], rng) for i in range(len(index))]
            a = np.stack([p[0] for p in pairs])
            b = np.stack([p[1] for p in pairs])
        yield (
            np.ascontiguousarray(a),
            np.ascontiguousarray(b),
            tiles.labels[index].astype(np.float32),
        )


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images become float in [0, 1] (channels-last); other arrays become float tensors."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    if array.dtype == np.uint8:
        return (tensor.float() / 255.0).contiguous(memory_format=torch.channels_last)
    return tensor.float()
