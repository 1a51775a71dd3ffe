"""A PNG quick-look of a result: before | after | probability | polygons over the after image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.io.rasters import RasterPair, open_raster
from core.io.stretch import compute_stretch
from core.io.windows import Window

MAX_EDGE = 512


def _rgb(data: np.ndarray) -> np.ndarray:
    """``[bands, rows, cols]`` in [0, 1] -> ``[rows, cols, 3]`` (grey for fewer than 3 bands)."""
    if data.shape[0] < 3:
        data = np.repeat(data[:1], 3, axis=0)
    return np.transpose(data[:3], (1, 2, 0))


def write_quicklook(
    pair: RasterPair, probability: Path, polygons: Path, out: Path, threshold: float
) -> Path:
    """Render the four panels side by side into ``out`` (PNG), decimated to at most 512 px."""
    import matplotlib

    matplotlib.use("Agg")
    import fiona
    import matplotlib.pyplot as plt

    grid = pair.grid
    scale = min(1.0, MAX_EDGE / max(grid.width, grid.height))
    size = (max(1, round(grid.width * scale)), max(1, round(grid.height * scale)))
    data = pair.read(Window(0, 0, grid.width, grid.height), out_size=size)
    stretch = compute_stretch(pair)
    prob_ds = open_raster(probability, "probability raster")
    prob = prob_ds.GetRasterBand(1).ReadAsArray(buf_xsize=size[0], buf_ysize=size[1])
    extent = (0, grid.width, grid.height, 0)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    panels = [
        ("before", _rgb(stretch.before.apply(data.before))),
        ("after", _rgb(stretch.after.apply(data.after))),
        ("change probability", np.ma.masked_less(prob, 0)),
        (f"change polygons (p >= {threshold:g})", _rgb(stretch.after.apply(data.after))),
    ]
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, extent=extent, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    inverse = _inverse(grid.display_transform)
    with fiona.open(polygons) as layer:
        for feature in layer:
            for ring in _rings(feature["geometry"]):
                px = [inverse(x, y) for x, y in ring]
                axes[3].plot([p[0] for p in px], [p[1] for p in px], color="#00e5ff", linewidth=0.9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _rings(geometry: dict) -> list[list[tuple[float, float]]]:
    """Every ring of a GeoJSON-like Polygon or MultiPolygon."""
    polygons = (
        geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    )
    return [ring for polygon in polygons for ring in polygon]


def _inverse(gt: tuple[float, ...]):  # noqa: ANN202 - a small closure
    """Map coordinates -> pixel (col, row) for a north-up geotransform."""
    return lambda x, y: ((x - gt[0]) / gt[1], (y - gt[3]) / gt[5])
