"""kdmsi core: headless weakly supervised change detection (KD-MSI) for raster pairs.

The package never imports QGIS or Qt. Heavy dependencies (torch) are imported only by the
modules that need them, so quick commands (grid, vectorize, evaluate) start fast.

Subpackages by role, in the order their imports run (a module may import its own subpackage and
those before it, never one after it; ``tests/core/test_layers.py`` checks every import, at module
level and inside functions, and that no two modules import each other, even indirectly):

1. ``runtime``: torch devices, arithmetic precision, distributed ranks, process settings.
2. ``io``: rasters and pairs, windows, tile grids, bands, the stretch, GeoTIFF/GeoPackage writers.
3. ``data``: tiles, tags, in-memory tile sets, dataset folders, training sources, synthetic scenes.
4. ``models``: backbones (base, registry, EfficientNet-Lite, ResNet), the Siamese CAM, distillation,
   the refinement network, the model file, the input-layout helper.
5. ``detect``: MSI, CVA, Otsu, the predictor of each method, tiled and parallel inference, ONNX.
6. ``train``: the trainer, the tags-to-model pipeline, batches, selection, thresholds, refinement.
7. ``vector``: threshold, polygonize, attributes, Shapefile and GeoPackage writers.
8. ``eval``: metrics, evaluation against a pixel reference, the benchmark.
9. ``workflows``: the demo, tagging suggestions, the quick-look image.
10. ``cli``: the ``kdmsi`` command line, its JSON-lines events, one module per subcommand.
11. ``perf``: developer benchmarks (``kdmsi perf``; left out of the plugin's zip, and registered
    by the command line by name only when present).

Modules directly in ``core`` are the foundation every layer may import: ``errors`` (the one error
type), ``callbacks`` (progress, cancel and log hooks) and ``choices`` (the closed sets of string
options and the defaults declared once).
"""

from __future__ import annotations

__version__ = "0.1.0"

LAYERS: tuple[str, ...] = (
    "runtime",
    "io",
    "data",
    "models",
    "detect",
    "train",
    "vector",
    "eval",
    "workflows",
    "cli",
    "perf",
)
FOUNDATION: tuple[str, ...] = ("errors", "callbacks", "choices")
