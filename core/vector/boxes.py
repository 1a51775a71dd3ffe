"""Polygonize each change component inside its own bounding box when change is sparse.

GDAL Polygonize scans every pixel of the raster it is given. When a large raster holds a few
change areas, that scan is almost all empty and takes as long as GDAL's whole run on the mask
(about 1 s for 64 million pixels). The labelling pass knows each component's bounding box, so
when the components are few (:data:`BOX_LIMIT`), their boxes cover a small share of the raster
(:data:`AREA_SHARE`) and none is very large (:data:`MAX_BOX_PIXELS`), each component is
polygonized alone: the pixels of its box that carry its label, on a small in-memory raster placed
at the box. Every component lies wholly in its box, so the polygons are the ones the whole-raster
scan gives (same rings, holes and ``pid``); they come top to bottom by their box's top row, then
left to right.
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from core.callbacks import Callbacks
from core.vector.components import Runs

BOX_LIMIT = 2048
AREA_SHARE = 0.25
MAX_BOX_PIXELS = 1 << 23  # 32 MB of labels, read at once


def run_boxes(runs: Runs, count: int, first: int, corner: tuple[int, int]) -> np.ndarray:
    """Bounding boxes of the labels ``first..first + count - 1`` of a window's runs.

    Args:
        runs: the window's labelled runs (rows and columns relative to the window).
        count: the number of labels; each has at least one run.
        first: the first label.
        corner: the window's top left pixel (row, column) in the raster.

    Returns:
        An int64 array (count x 4) of top, left, bottom and right pixel edges in the raster
        (bottom and right exclusive).
    """
    order = np.argsort(runs.labels, kind="stable")
    starts = np.searchsorted(runs.labels[order], np.arange(first, first + count))
    row, col = corner
    rows = runs.rows[order]
    return np.stack(
        [
            np.minimum.reduceat(rows, starts) + row,
            np.minimum.reduceat(runs.starts[order], starts) + col,
            np.maximum.reduceat(rows, starts) + row + 1,
            np.maximum.reduceat(runs.ends[order], starts) + col,
        ],
        axis=1,
    )


def component_boxes(label_boxes: np.ndarray, roots: np.ndarray) -> dict[int, tuple[int, ...]]:
    """The box of every component, keyed by its root label, top to bottom then left to right.

    Args:
        label_boxes: one box per label (row 0, label 0, unused), as :func:`run_boxes` gives.
        roots: the root label of every label (:func:`core.vector.components.smallest_connected`).
    """
    low = np.full((roots.size, 2), np.iinfo(np.int64).max)
    high = np.zeros((roots.size, 2), np.int64)
    np.minimum.at(low, roots, label_boxes[:, :2])
    np.maximum.at(high, roots, label_boxes[:, 2:])
    components = np.flatnonzero(roots == np.arange(roots.size))[1:]
    boxes = np.concatenate([low, high], axis=1)[components]
    order = np.lexsort((boxes[:, 1], boxes[:, 0]))
    return {int(components[i]): tuple(int(v) for v in boxes[i]) for i in order}


def worth_boxes(boxes: dict[int, tuple[int, ...]] | None, width: int, height: int) -> bool:
    """Whether to polygonize box by box.

    Yes for few components whose boxes cover little of the raster and none of which is larger
    than :data:`MAX_BOX_PIXELS` (a box is read whole, while GDAL's scan of the raster keeps its
    memory flat).
    """
    if boxes is None or len(boxes) > BOX_LIMIT:
        return False
    areas = [(bottom - top) * (right - left) for top, left, bottom, right in boxes.values()]
    return sum(areas) <= AREA_SHARE * width * height and max(areas, default=0) <= MAX_BOX_PIXELS


def polygonize_boxes(
    labels: gdal.Dataset,
    boxes: dict[int, tuple[int, ...]],
    layer: object,
    connectivity: int,
    callbacks: Callbacks,
) -> None:
    """Add the polygon of every component to ``layer`` (field 0, ``pid``: its label).

    Args:
        labels: the label raster (its geotransform places the polygons).
        boxes: each component's box, keyed by its label (:func:`component_boxes`).
        layer: the in-memory OGR layer the polygons are added to.
        connectivity: 4 or 8, as the labels were made with.
        callbacks: progress (0.3 to 0.6, "polygonizing") and cancel, box by box.
    """
    band = labels.GetRasterBand(1)
    gt = labels.GetGeoTransform()
    options = ["8CONNECTED=8"] if connectivity == 8 else []
    memory_driver = gdal.GetDriverByName("MEM")
    for done, (label, (top, left, bottom, right)) in enumerate(boxes.items()):
        callbacks.check_canceled()
        window = band.ReadAsArray(left, top, right - left, bottom - top)
        own = np.where(window == label, window, 0)  # other components' pixels in the box: none
        raster = memory_driver.Create("", right - left, bottom - top, 1, gdal.GDT_Int32)
        raster.SetGeoTransform(
            (gt[0] + left * gt[1] + top * gt[2], gt[1], gt[2],
             gt[3] + left * gt[4] + top * gt[5], gt[4], gt[5])
        )  # fmt: skip
        box_band = raster.GetRasterBand(1)
        box_band.WriteArray(own)
        gdal.Polygonize(box_band, box_band, layer, 0, options)
        callbacks.progress(0.3 + 0.3 * (done + 1) / len(boxes), "polygonizing")
