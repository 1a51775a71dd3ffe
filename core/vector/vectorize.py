"""Turn a change probability (or mask) raster into change polygons.

Steps: read band 1 once, chunk by chunk; threshold it (change is ``value >= threshold``; nodata,
masked and NaN pixels never are), label the connected change components (4- or 8-connectivity) and
gather each one's mean and maximum probability, writing the labels to a temporary sparse GeoTIFF
(:mod:`core.vector.labelling`); GDAL Polygonize of that raster gives the polygons (holes kept), each
with its label; drop polygons under ``min_area`` or ``min_pixels`` and those whose strongest pixel
stays under ``peak_ratio`` times the threshold (weak regions, mostly false alarms on the product's
map: BENCHMARKS.md, "Regions kept by their strongest pixel"); optionally simplify (shapely,
topology preserved); write ESRI Shapefile (with ``.prj``) or GeoPackage in the raster's CRS
(:mod:`core.vector.writers`). Areas are in map units squared. An ungeoreferenced raster gives pixel
coordinates the way QGIS shows such images (x = column, y = minus the row, see
``Grid.display_transform``) and no CRS (a GeoPackage's srs_id -1, "undefined Cartesian"), so
polygons overlay the image in QGIS.

Value scale rule: a Byte band whose largest valid value is above 1 is read as 0..255 and divided
by 255, so 0/255 masks and 8-bit probabilities work with threshold 0.5 (128 and up is change);
Byte bands of 0/1 and every other data type are used as they are. ``mean_prob`` and ``max_prob``
are reported on the same scale.

A georeferenced, all-valid 0/1 Byte mask cut at a threshold in (0, 1] takes a shorter road with
the same result: it is polygonized as it is (no labels), its statistics are 1, and without
simplification ``gdal.VectorTranslate`` copies the polygons with their ``OGR_GEOM_AREA`` (no
Python per polygon). The raster side lives in :mod:`core.vector.polygonize`.

The output is written under a temporary name in the destination folder and renamed at the end,
so a failure never leaves a file (or set of shapefile files) that looks complete.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr

from core.callbacks import Callbacks
from core.errors import KdmsiError
from core.io.outputs import check_writable
from core.vector.boxes import polygonize_boxes, worth_boxes
from core.vector.labelling import label_raster
from core.vector.polygonize import (
    PolygonStats,
    Source,
    numbered,
    open_source,
    polygon_layer,
    polygonize,
)
from core.vector.tag_rules import TagRules
from core.vector.writers import copy_constant, copy_measured, write_polygons

_SHAPEFILE_PARTS = (
    ".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml",
)  # fmt: skip


@dataclass(frozen=True)
class VectorizeParams:
    """How to turn probabilities into polygons.

    Attributes:
        threshold: a pixel is change when its (scaled) value is ``>= threshold``.
        min_area: polygons with an area below this (map units squared) are dropped.
        simplify: shapely topology-preserving simplification tolerance in map units; 0 = none.
        connectivity: 4 (edge neighbours) or 8 (corner neighbours join too).
        tags: the tag layer of the pair (None: none): tiles tagged unchanged get no polygon,
            and tiles tagged changed that end with no change pixel are reported
            (:mod:`core.vector.tag_rules`).
        min_pixels: polygons of fewer pixels are dropped too (0 or 1: none), whatever the CRS:
            a polygon of ``n`` pixels has ``n`` times a pixel's area.
        peak_ratio: a change region is kept only where its strongest pixel reaches
            ``peak_ratio`` times the threshold (:attr:`peak_cut`; 1 keeps every region).
    """

    threshold: float = 0.5
    min_area: float = 0.0
    simplify: float = 0.0
    connectivity: int = 4
    tags: Path | None = None
    min_pixels: int = 0
    peak_ratio: float = 1.0

    def __post_init__(self) -> None:
        """Raise KdmsiError on a connectivity not 4 or 8 or a bad threshold, area or tolerance."""
        if self.connectivity not in (4, 8):
            raise KdmsiError(f"Connectivity {self.connectivity} is not supported; use 4 or 8.")
        if not math.isfinite(self.threshold):
            raise KdmsiError("The vectorize threshold must be a finite number such as 0.5.")
        if not (self.min_area >= 0 and self.simplify >= 0):  # also refuses NaN
            raise KdmsiError("Minimum area and simplification tolerance must be 0 or more.")
        if self.min_pixels < 0 or int(self.min_pixels) != self.min_pixels:
            raise KdmsiError(
                "The smallest polygon size must be a whole number of pixels, 0 or more."
            )
        if not (math.isfinite(self.peak_ratio) and self.peak_ratio >= 1):
            raise KdmsiError(
                "The peak ratio must be a number of 1 or more (1 keeps every change region)."
            )

    @property
    def peak_cut(self) -> float:
        """The value a region's strongest pixel must reach: ``peak_ratio`` x the threshold.

        Capped at 1 (or at the threshold, if that is higher), so a region of a probability map
        that reaches 1 and every region of a 0/1 mask is always kept.
        """
        return min(self.peak_ratio * self.threshold, max(self.threshold, 1.0))

    def smallest_area(self, pixel_area: float) -> float:
        """The smallest polygon area kept (map units squared).

        ``min_area``, or ``min_pixels`` pixels of ``pixel_area``, the larger (half a pixel less,
        so that float areas compare safely).
        """
        by_pixels = (self.min_pixels - 0.5) * pixel_area if self.min_pixels > 1 else 0.0
        return max(self.min_area, by_pixels)


@dataclass
class VectorizeResult:
    """What :func:`vectorize` wrote.

    Attributes:
        path: the output file (``.shp`` or ``.gpkg``).
        count: number of polygons written.
        total_area: sum of the written polygons' areas, map units squared.
        cleared_tiles: ids of tiles tagged unchanged whose change pixels were cleared.
        changed_without_change: ids of tiles tagged changed with no change pixel.
    """

    path: Path
    count: int
    total_area: float
    cleared_tiles: tuple[int, ...] = ()
    changed_without_change: tuple[int, ...] = ()


def _output_parts(path: Path) -> list[Path]:
    """Return the files that make up the output (every shapefile sidecar, or the file)."""
    if path.suffix.lower() != ".shp":
        return [path]
    return [path.with_name(path.stem + ext) for ext in _SHAPEFILE_PARTS]


def _check_paths(prob_path: Path, out_path: Path, overwrite: bool) -> str:
    """Check the input exists and the output may be written; return the OGR driver name."""
    driver = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}.get(out_path.suffix.lower())
    if driver is None:
        raise KdmsiError(f"Cannot write polygons to {out_path}; name the output .shp or .gpkg.")
    if not prob_path.is_file():
        raise KdmsiError(f"The probability raster {prob_path} does not exist; check the path.")
    if not out_path.parent.is_dir():
        raise KdmsiError(f"The folder of {out_path} does not exist; create it first.")
    check_writable(out_path.parent, f"the output {out_path}")
    existing = [part for part in _output_parts(out_path) if part.exists()]
    if existing and not overwrite:
        raise KdmsiError(f"{existing[0]} already exists; choose another name or allow overwrite.")
    return driver


def _move_into_place(temp: Path, out_path: Path) -> None:
    """Replace the output (all its parts) by the finished temporary file(s); ``.shp`` last."""
    for part in _output_parts(out_path):
        part.unlink(missing_ok=True)
    pairs = list(zip(_output_parts(temp), _output_parts(out_path)))
    for source, destination in sorted(pairs, key=lambda pair: pair[1].suffix == ".shp"):
        if source.exists():
            source.replace(destination)


def _run_steps(
    source: Source,
    params: VectorizeParams,
    target: tuple[Path, str, str],
    callbacks: Callbacks,
    rules: TagRules | None = None,
) -> tuple[int, float]:
    """Threshold, label, polygonize, measure and write ``target`` (path, driver, layer name).

    A 0/1 mask (see :meth:`Source.is_binary_mask`) is polygonized as it is and its statistics
    are 1 everywhere. Without simplification GDAL copies the polygons in one call.
    """
    min_area = params.smallest_area(source.pixel_area)
    if source.is_binary_mask(params.threshold) and rules is None:
        simplify = params.simplify > 0  # then every polygon's pid is the mask's value, 1
        memory = polygonize(source.dataset, source, params.connectivity, callbacks, simplify)
        if not simplify:
            return copy_constant(memory, min_area, 1.0, target, source, callbacks)
        stats = PolygonStats.constant(1, 1.0)
        return _write_simplified(memory, stats, params, target, source, callbacks)
    with tempfile.TemporaryDirectory(prefix="kdmsi-vectorize-") as work:
        labels = label_raster(
            source, (params.threshold, params.connectivity), Path(work) / "labels.tif",
            callbacks, rules,
        )  # fmt: skip
        stats = labels.stats
        if rules is not None:
            kept = stats.counts * source.pixel_area >= min_area
            kept &= stats.maxima >= params.peak_cut
            kept[0] = False  # label 0 is no change
            count_kept(rules, labels.raster.GetRasterBand(1), kept)
        if worth_boxes(labels.boxes, source.width, source.height):
            memory, layer = polygon_layer(source, True)
            polygonize_boxes(labels.raster, labels.boxes, layer, params.connectivity, callbacks)
        else:
            memory = polygonize(labels.raster, source, params.connectivity, callbacks, True)
        del labels
    if params.simplify == 0:
        return copy_measured(memory, stats, min_area, target, source, callbacks, params.peak_cut)
    return _write_simplified(memory, stats, params, target, source, callbacks)


def count_kept(rules: TagRules, labels: gdal.Band, kept: np.ndarray) -> None:
    """Count each changed-tagged tile's change pixels again: those of regions that get a polygon.

    ``labels`` is the label raster (0: no change), ``kept`` says per label whether its region
    passes the polygon rules (size, peak), so a tile whose change is all specks or weak regions
    is reported as a tile without change polygon.
    """
    for tile_id, window in rules.changed:
        inside = labels.ReadAsArray(window.col, window.row, window.width, window.height)
        rules.change_pixels[tile_id] = int(kept[inside].sum())


def _write_simplified(
    memory: gdal.Dataset,
    stats: PolygonStats,
    params: VectorizeParams,
    target: tuple[Path, str, str],
    source: Source,
    callbacks: Callbacks,
) -> tuple[int, float]:
    """Write the polygons of at least the smallest area simplified, one by one in Python."""
    view = numbered(memory, params.smallest_area(source.pixel_area))
    try:
        return write_polygons(
            view, stats, target, source, params.simplify, callbacks, params.peak_cut
        )
    finally:
        memory.ReleaseResultSet(view)


def vectorize(
    prob_path: Path,
    out_path: Path,
    params: VectorizeParams,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> VectorizeResult:
    """Threshold a probability or mask raster and write its change polygons.

    Args:
        prob_path: single band raster (band 1 is used); see the module notes on value scale.
        out_path: ``.shp`` (ESRI Shapefile with ``.prj``) or ``.gpkg`` (GeoPackage).
        params: threshold, smallest polygon (area, pixels), simplification and connectivity.
        callbacks: progress and cancel hooks; None reports nothing.
        overwrite: replace an existing output; otherwise an existing output is refused.

    Returns:
        The output path, the number of polygons and their total area (map units squared).

    Raises:
        KdmsiError: on an unknown output suffix, a missing or unreadable input, an existing
            output without ``overwrite``, or a failure to write the output.
        Canceled: when ``callbacks.is_canceled()`` becomes True.
    """
    gdal.UseExceptions()
    ogr.UseExceptions()
    callbacks = callbacks or Callbacks()
    prob_path, out_path = Path(prob_path), Path(out_path)
    driver = _check_paths(prob_path, out_path, overwrite)
    source = open_source(prob_path)
    if source.dataset.RasterCount > 1:
        callbacks.warning(f"{prob_path} has {source.dataset.RasterCount} bands; using band 1.")
    rules = None
    if params.tags is not None:
        rules = TagRules.from_layer(params.tags, source.width, source.height, prob_path)
    temp = out_path.with_name(f".{out_path.stem}.partial-{uuid.uuid4().hex[:8]}{out_path.suffix}")
    try:
        target = (temp, driver, out_path.stem)
        count, total = _run_steps(source, params, target, callbacks, rules)
        _move_into_place(temp, out_path)
    except (RuntimeError, OSError) as exc:
        raise KdmsiError(
            f"Could not vectorize {prob_path} into {out_path} ({exc}); the output folder was "
            f"writable, so {prob_path.name} is probably damaged (export it again) or the disk "
            "filled up."
        ) from exc
    finally:
        for part in _output_parts(temp):
            part.unlink(missing_ok=True)
    callbacks.progress(1.0, f"{count} polygons")
    if rules is None:
        return VectorizeResult(out_path, count, total)
    return VectorizeResult(
        out_path, count, total, tuple(sorted(rules.cleared)), tuple(rules.changed_without_change)
    )
