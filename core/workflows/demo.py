"""The end-to-end demo: grid, tags, train, detect, vectorize and a quick-look, in one call.

Without inputs it runs on a small generated scene (stated as synthetic in the output); with
``before``/``after`` it runs on the user's pair, tagged from ``labels`` (a pixel mask) or from a
tag layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.callbacks import Callbacks
from core.choices import DEFAULTS
from core.data.synthetic import make_scene
from core.data.tags import tags_from_mask, write_tags
from core.data.tiles import pair_tiles
from core.data.trainsets import check_tags, tiles_from_tag_layer
from core.detect.pair import detect_with_model
from core.detect.params import DetectParams
from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.runtime.devices import pick_device
from core.train.pipeline import train_model
from core.train.trainer import TrainParams
from core.vector.vectorize import VectorizeParams, vectorize


@dataclass(frozen=True)
class DemoInputs:
    """What the demo runs on (all None: the generated scene)."""

    before: Path | None = None
    after: Path | None = None
    labels: Path | None = None
    tags: Path | None = None
    bands: tuple[int, ...] | None = None
    tile: int = 64
    epochs: int = 6


def _inputs(
    out: Path, inputs: DemoInputs, callbacks: Callbacks
) -> tuple[Path, Path, Path | None, bool]:
    """Before, after, label mask, and whether the scene is synthetic."""
    if inputs.before is None and inputs.after is None:
        scene = make_scene(out / "scene")
        callbacks.info(
            f"No pair given: using a generated SYNTHETIC scene ({scene.before.parent}), "
            "1024x1024 px in EPSG:32633, with new neighbourhoods as the change."
        )
        return scene.before, scene.after, scene.label, True
    if inputs.before is None or inputs.after is None:
        raise KdmsiError("Give both --before and --after, or neither for the synthetic scene.")
    if inputs.labels is None and inputs.tags is None:
        raise KdmsiError(
            "The demo needs tags for a real pair: pass --labels MASK or --tags TAGS.gpkg."
        )
    return inputs.before, inputs.after, inputs.labels, False


def run_demo(
    out: Path, inputs: DemoInputs, callbacks: Callbacks, device_name: str = "auto"
) -> dict[str, str]:
    """Run the pipeline and return the paths of what it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    before, after, labels, synthetic = _inputs(out, inputs, callbacks)
    tags_path = inputs.tags or out / "tags.gpkg"
    with RasterPair.open(before, after, inputs.bands, callbacks) as pair:
        bands = pair.bands
        if inputs.tags is None:
            tiles = pair_tiles(pair, inputs.tile)
            tags = tags_from_mask(labels, tiles, pair.grid)
            meta = {
                "before": before.resolve(),
                "after": after.resolve(),
                "tile": inputs.tile,
                "stride": inputs.tile,
                "width": pair.grid.width,
                "height": pair.grid.height,
            }
            write_tags(tags_path, pair.grid, tiles, tags, meta, overwrite=True)
    tileset = tiles_from_tag_layer(before, after, tags_path, bands, callbacks)
    check_tags(tileset, str(tags_path))
    device = pick_device(device_name, callbacks.log)
    params = TrainParams(epochs=inputs.epochs)
    result = train_model(tileset, params, bands, out / "run", device, callbacks)
    probability = out / "change_probability.tif"
    threshold = detect_with_model(
        before,
        after,
        result.model_path,
        probability,
        DetectParams(),
        bands,
        callbacks,
        overwrite=True,
    )
    polygons = out / "changes.shp"
    for sidecar in out.glob("changes.*"):
        sidecar.unlink()
    vectorize(
        probability,
        polygons,
        VectorizeParams(threshold, min_pixels=DEFAULTS.min_pixels, peak_ratio=DEFAULTS.peak_ratio),
        callbacks,
    )
    from core.workflows.quicklook import write_quicklook

    with RasterPair.open(before, after, bands, callbacks) as pair:
        quicklook = write_quicklook(pair, probability, polygons, out / "quicklook.png", threshold)
    outputs = {
        "probability": str(probability),
        "polygons": str(polygons),
        "quicklook": str(quicklook),
        "tags": str(tags_path),
        "model": str(result.model_path),
    }
    if synthetic:
        outputs["note"] = "synthetic demo scene"
    return outputs
