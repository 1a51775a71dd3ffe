"""Each Processing algorithm of the KD-MSI provider runs through processing.run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr
from qgis.core import QgsApplication, QgsProcessingFeedback

from kdmsi_qgis.provider import KdmsiProvider

sys.path.append("/usr/share/qgis/python/plugins")


@pytest.fixture(scope="module")
def processing(qgis_app):
    processing = pytest.importorskip("processing")
    from processing.core.Processing import Processing

    Processing.initialize()
    provider = KdmsiProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield processing
    QgsApplication.processingRegistry().removeProvider(provider)


def count_features(path, layer_name=None) -> int:
    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName(layer_name) if layer_name else ds.GetLayer(0)
    count = layer.GetFeatureCount()
    ds = None
    return count


def test_create_tile_grid(processing, mumbai_pair, tmp_path, worker_python):
    out = tmp_path / "tags.gpkg"
    result = processing.run(
        "kdmsi:createtilegrid",
        {
            "BEFORE": str(mumbai_pair["before"]),
            "AFTER": str(mumbai_pair["after"]),
            "BANDS": "3,2,1",
            "TILE": 128,
            "LABELS": str(mumbai_pair["label"]),
            "OUTPUT": str(out),
        },
    )
    assert result["OUTPUT"] == str(out)
    assert count_features(out, "tiles") > 0


def test_train_detect_and_vectorize(processing, levir_pair, levir_tags, tmp_path):
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    trained = processing.run(
        "kdmsi:trainfromtags",
        {
            "BEFORE": str(levir_pair["before"]),
            "AFTER": str(levir_pair["after"]),
            "TAGS": f"{levir_tags}|layername=tiles",
            "BACKBONE": 1,  # resnet18
            "EPOCHS": 1,
            "EDGES": True,
            "DEVICE": 1,  # cpu
            "OUTPUT": str(tmp_path / "run"),
        },
        feedback=feedback,
    )
    assert trained["MODEL"].endswith("model.pt")
    from core.models.model_file import load_model

    info = load_model(Path(trained["MODEL"]))[0]
    assert info.affinity_rounds == 10  # "Follow colour edges" reached the worker
    assert progress and max(progress) == pytest.approx(100.0)
    detected = processing.run(
        "kdmsi:detectchanges",
        {
            "BEFORE": str(levir_pair["before"]),
            "AFTER": str(levir_pair["after"]),
            "METHOD": 0,  # auto
            "MODEL": trained["MODEL"],
            "DEVICE": 1,
            "OUTPUT": str(tmp_path / "prob.tif"),
        },
    )
    assert gdal.Open(detected["OUTPUT"]).RasterXSize == 256
    vectorized = processing.run(
        "kdmsi:vectorizechangemap",
        {"INPUT": detected["OUTPUT"], "THRESHOLD": 0.05, "OUTPUT": str(tmp_path / "ch.gpkg")},
    )
    assert count_features(vectorized["OUTPUT"]) >= 0


def test_a_one_band_radar_pair_is_combined_with_its_standardised_difference(
    processing, shared_data, require, tmp_path
):
    root = require(shared_data / "sar_classic_cd")  # Bern, ERS-2 SAR: one band, 301 x 301 px
    before, after, label = (root / part / "bern.png" for part in ("A", "B", "label"))
    tags = processing.run(
        "kdmsi:createtilegrid",
        {"BEFORE": str(before), "AFTER": str(after), "TILE": 64, "LABELS": str(label),
         "OUTPUT": str(tmp_path / "tags.gpkg")},
    )["OUTPUT"]  # fmt: skip
    trained = processing.run(
        "kdmsi:trainfromtags",
        {"BEFORE": str(before), "AFTER": str(after), "TAGS": f"{tags}|layername=tiles",
         "BACKBONE": 1, "EPOCHS": 1, "DEVICE": 1, "OUTPUT": str(tmp_path / "run")},
    )  # fmt: skip
    from core.models.model_file import load_model

    info = load_model(Path(trained["MODEL"]))[0]
    assert info.bands == [1] and info.cva_standardised
    detected = processing.run(
        "kdmsi:detectchanges",
        {"BEFORE": str(before), "AFTER": str(after), "METHOD": 0, "MODEL": trained["MODEL"],
         "DEVICE": 1, "OUTPUT": str(tmp_path / "prob.tif")},
    )  # fmt: skip
    stored = gdal.Open(detected["OUTPUT"]).GetMetadata()
    assert stored["kdmsi_method"] == "kdmsi-cva"  # what auto runs
    mean_a, std_a, mean_b, std_b = (float(v) for v in stored["kdmsi_cva_standard"].split(","))
    assert 0 < mean_a < 1 and 0 < mean_b < 1 and std_a > 0 and std_b > 0


def test_vectorize_default_threshold_and_shapefile(processing, mumbai_pair, tmp_path):
    cva = processing.run(
        "kdmsi:detectchanges",
        {
            "BEFORE": str(mumbai_pair["before"]),
            "AFTER": str(mumbai_pair["after"]),
            "BANDS": "3,2,1",
            "METHOD": 4,  # cva
            "OUTPUT": str(tmp_path / "cva.tif"),
        },
    )
    out = processing.run(
        "kdmsi:vectorizechangemap", {"INPUT": cva["OUTPUT"], "OUTPUT": str(tmp_path / "cva.shp")}
    )
    assert count_features(out["OUTPUT"]) > 0


def test_vectorize_leaves_weak_regions_out_unless_asked(processing, tmp_path, write_raster):
    prob = np.zeros((64, 64), np.float32)
    prob[4:20, 4:20] = 0.9  # strong: kept
    prob[30:40, 30:50] = 0.55  # never reaches 1.25 x 0.5: left out by default
    raster = write_raster(tmp_path / "p.tif", prob)
    counts = {}
    for ratio in (None, 1.0):
        params = {"INPUT": str(raster), "THRESHOLD": 0.5, "OUTPUT": str(tmp_path / f"{ratio}.gpkg")}
        if ratio is not None:
            params["PEAK_RATIO"] = ratio
        counts[ratio] = count_features(processing.run("kdmsi:vectorizechangemap", params)["OUTPUT"])
    assert counts == {None: 1, 1.0: 2}


def test_cancel_stops_the_worker(processing, levir_pair, levir_tags, tmp_path):
    from qgis.core import QgsProcessingException

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda _p: feedback.cancel())
    with pytest.raises(QgsProcessingException, match="canceled"):
        processing.run(
            "kdmsi:trainfromtags",
            {
                "BEFORE": str(levir_pair["before"]),
                "AFTER": str(levir_pair["after"]),
                "TAGS": f"{levir_tags}|layername=tiles",
                "BACKBONE": 1,
                "EPOCHS": 100,
                "DEVICE": 1,
                "OUTPUT": str(tmp_path / "run"),
            },
            feedback=feedback,
        )


def test_suggest_tiles(processing, levir_pair, levir_tags, levir_model, tmp_path):
    out = tmp_path / "suggestions.gpkg"
    result = processing.run(
        "kdmsi:suggesttiles",
        {
            "BEFORE": str(levir_pair["before"]),
            "AFTER": str(levir_pair["after"]),
            "TAGS": str(levir_tags),
            "MODEL": str(levir_model),
            "COUNT": 5,
            "DEVICE": 0,
            "OUTPUT": str(out),
        },
    )
    assert result["OUTPUT"] == str(out)
    assert 0 < count_features(out) <= 5 + count_features(levir_tags, "tiles")


def test_worker_errors_name_the_dialog_parameters(processing, levir_pair, tmp_path):
    from qgis.core import QgsProcessingException

    parameters = {
        "BEFORE": str(levir_pair["before"]),
        "AFTER": str(levir_pair["after"]),
        "METHOD": 0,  # auto, which needs a model
        "OUTPUT": str(tmp_path / "p.tif"),
    }
    with pytest.raises(QgsProcessingException) as raised:
        processing.run("kdmsi:detectchanges", parameters)
    message = str(raised.value)
    assert "'Method' auto needs 'Model file' from 'Train from tags'" in message, message
    assert "--" not in message and "kdmsi " not in message


def test_defaults_of_the_plugin_follow_the_core(qgis_app):
    from core.choices import CHOICES, DEFAULTS
    from core.cli.main import build_parser
    from core.train.trainer import TrainParams
    from kdmsi_qgis.algorithms import (
        CreateTileGrid,
        DetectChanges,
        TrainFromTags,
        VectorizeChangeMap,
    )
    from kdmsi_qgis.settings import BACKBONES, DEVICES, METHODS, Options, edge_rounds

    train = TrainFromTags()
    train.initAlgorithm({})
    epochs = train.parameterDefinition("EPOCHS").defaultValue()
    assert epochs == Options().epochs == TrainParams().epochs == DEFAULTS.epochs
    backbone = BACKBONES[train.parameterDefinition("BACKBONE").defaultValue()]
    assert backbone == Options().backbone == TrainParams().backbone
    assert train.parameterDefinition("EDGES").defaultValue() is False
    assert Options().follow_edges is False
    assert edge_rounds(False) == TrainParams().affinity_rounds == DEFAULTS.affinity_rounds
    assert edge_rounds(True) == DEFAULTS.affinity_rounds_aerial > 0
    grid = CreateTileGrid()
    grid.initAlgorithm({})
    cli_grid = build_parser().parse_args(["grid", "--before", "a", "--after", "b", "--out", "t"])
    assert grid.parameterDefinition("TILE").defaultValue() == Options().tile == cli_grid.tile
    detect = DetectChanges()
    detect.initAlgorithm({})
    assert METHODS[detect.parameterDefinition("METHOD").defaultValue()] == DEFAULTS.method
    assert BACKBONES == CHOICES["backbone"] and DEVICES == CHOICES["device"]
    assert METHODS == CHOICES["method"]
    vectorize = VectorizeChangeMap()
    vectorize.initAlgorithm({})
    cli_vectorize = build_parser().parse_args(["vectorize", "--prob", "p", "--out", "o.gpkg"])
    peak = vectorize.parameterDefinition("PEAK_RATIO").defaultValue()
    assert peak == cli_vectorize.peak_ratio == DEFAULTS.peak_ratio > 1
    pixels = vectorize.parameterDefinition("MIN_PIXELS").defaultValue()
    assert pixels == cli_vectorize.min_pixels == Options().min_pixels
