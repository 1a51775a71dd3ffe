"""Processing algorithms; each runs the worker CLI synchronously and reports to the feedback."""

from __future__ import annotations

import re
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from kdmsi_qgis.settings import BACKBONES, DEFAULTS, DEVICES, EDGES_TIP, METHODS, edge_rounds
from kdmsi_qgis.worker import WorkerOutcome, run_command

# The Processing titles of the worker's commands, for its messages.
COMMAND_TITLES = {
    "grid": "Create tile grid",
    "train": "Train from tags",
    "detect": "Detect changes",
    "vectorize": "Vectorize change map",
    "suggest": "Suggest tiles to tag",
}
# Worker options whose dialog parameter has another name, per algorithm.
OPTION_ALIASES = {
    "vectorizechangemap": {"--prob": "'Change probability'", "--out": "'Change polygons'"},
    "detectchanges": {"--out": "'Change probability'"},
}


class KdmsiAlgorithm(QgsProcessingAlgorithm):
    """Common parts: naming, the pair parameters, running the worker."""

    NAME = ""
    TITLE = ""
    HELP = ""

    def name(self) -> str:
        """Algorithm id inside the provider."""
        return self.NAME

    def displayName(self) -> str:
        """Title in the toolbox."""
        return self.TITLE

    def shortHelpString(self) -> str:
        """Help shown beside the dialog."""
        return self.HELP

    def createInstance(self) -> KdmsiAlgorithm:
        """A fresh copy (Processing runs copies)."""
        return type(self)()

    def add_pair(self) -> None:
        """BEFORE, AFTER and BANDS parameters."""
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before raster (A)"))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", "After raster (B)"))
        self.addParameter(
            QgsProcessingParameterString(
                "BANDS", "Bands, e.g. 3,2,1 (empty: first three)", optional=True
            )
        )

    def pair(self, parameters: dict, context: QgsProcessingContext) -> dict[str, Any]:
        """Worker options ``before``, ``after``, ``bands``."""
        out = {}
        for key in ("BEFORE", "AFTER"):
            layer = self.parameterAsRasterLayer(parameters, key, context)
            if layer is None:
                raise QgsProcessingException(f"{key.lower()} raster is missing.")
            out[key.lower()] = layer.source().split("|")[0]
        out["bands"] = self.parameterAsString(parameters, "BANDS", context).strip() or None
        return out

    def run_worker(
        self, command: str, options: dict[str, Any], feedback: QgsProcessingFeedback
    ) -> WorkerOutcome:
        """Run ``kdmsi <command>``; progress to the feedback; cancel honoured; errors raised."""

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "progress":
                feedback.setProgress(100.0 * float(event.get("fraction", 0.0)))
                feedback.setProgressText(str(event.get("message", "")))
            elif kind == "log":
                feedback.pushInfo(str(event.get("message", "")))
            elif kind == "metric":
                feedback.pushDebugInfo(f"{event.get('name')} = {event.get('value')}")

        outcome = run_command(command, options, on_event, feedback.isCanceled)
        if outcome.canceled or feedback.isCanceled():
            raise QgsProcessingException(f"{self.TITLE} was canceled.")
        if not outcome.ok:
            message = outcome.error or f"{self.TITLE} failed; the log above says why."
            raise QgsProcessingException(self.in_dialog_terms(message))
        return outcome

    def in_dialog_terms(self, message: str) -> str:
        """The worker's sentence with its command-line names replaced by this dialog's.

        ``--model FILE`` becomes 'Model file' (the parameter's label), ``kdmsi train`` becomes
        'Train from tags' (the algorithm's title); flags the dialog lacks stay as they are.
        """
        labels = {
            f"--{d.name().lower().replace('_', '-')}": f"'{d.description()}'"
            for d in self.parameterDefinitions()
        }
        labels.update(OPTION_ALIASES.get(self.NAME, {}))

        def flag(match: re.Match) -> str:
            return labels.get(match.group(1), match.group(0))

        message = re.sub(r"(--[a-z][a-z-]*)(?: [A-Z]{2,})?", flag, message)
        for command, title in COMMAND_TITLES.items():
            message = message.replace(f"`kdmsi {command}`", f"'{title}'")
        return message


class CreateTileGrid(KdmsiAlgorithm):
    """``kdmsi grid``."""

    NAME, TITLE = "createtilegrid", "Create tile grid"
    HELP = (
        "Cuts the overlap of a before/after pair into tiles and writes a tag layer (GeoPackage, "
        "layer 'tiles', label NULL = untagged), optionally tagged from a pixel change mask."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters."""
        self.add_pair()
        self.addParameter(
            QgsProcessingParameterNumber(
                "TILE", "Tile size (pixels)", defaultValue=DEFAULTS["tile"], minValue=8
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer("LABELS", "Pixel change mask", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Tag layer", "GeoPackage (*.gpkg)")
        )

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        """Run the worker and load the tag layer."""
        options = self.pair(parameters, context)
        labels = self.parameterAsRasterLayer(parameters, "LABELS", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        options.update(
            tile=self.parameterAsInt(parameters, "TILE", context),
            labels=labels.source() if labels is not None else None,
            out=out,
            overwrite=True,
        )
        self.run_worker("grid", options, feedback)
        details = QgsProcessingContext.LayerDetails("KD-MSI tags", context.project(), "OUTPUT")
        context.addLayerToLoadOnCompletion(f"{out}|layername=tiles", details)
        return {"OUTPUT": out}


class TrainFromTags(KdmsiAlgorithm):
    """``kdmsi train --before --after --tags``."""

    NAME, TITLE = "trainfromtags", "Train from tags"
    HELP = (
        "Trains a KD-MSI model from a tag layer; the run folder receives model.pt. Tick "
        "'Follow colour edges' for aerial photographs (it lowered F1 on 10 m Sentinel-2 cities "
        "and radar images in the benchmark)."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters."""
        self.add_pair()
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "TAGS", "Tag layer", [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "BACKBONE",
                "Backbone",
                list(BACKBONES),
                defaultValue=BACKBONES.index(DEFAULTS["backbone"]),
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "EPOCHS", "Epochs", defaultValue=DEFAULTS["epochs"], minValue=1
            )
        )
        edges = QgsProcessingParameterBoolean(
            "EDGES", "Follow colour edges (aerial photographs)", defaultValue=False
        )
        edges.setHelp(EDGES_TIP)
        self.addParameter(edges)
        self.addParameter(
            QgsProcessingParameterEnum("DEVICE", "Device", list(DEVICES), defaultValue=0)
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Run folder"))
        self.addOutput(QgsProcessingOutputFile("MODEL", "Model file"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        """Run the worker."""
        options = self.pair(parameters, context)
        tags = self.parameterAsVectorLayer(parameters, "TAGS", context)
        if tags is None:
            raise QgsProcessingException("tag layer is missing.")
        options.update(
            tags=tags.source().split("|")[0],
            out=self.parameterAsString(parameters, "OUTPUT", context),
            backbone=BACKBONES[self.parameterAsEnum(parameters, "BACKBONE", context)],
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            affinity_rounds=edge_rounds(self.parameterAsBool(parameters, "EDGES", context)),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
        )
        outcome = self.run_worker("train", options, feedback)
        return {"OUTPUT": options["out"], "MODEL": outcome.outputs.get("model", "")}


class DetectChanges(KdmsiAlgorithm):
    """``kdmsi detect``."""

    NAME, TITLE = "detectchanges", "Detect changes"
    HELP = (
        "Change probability GeoTIFF of a pair on the before raster's grid, from a model made by "
        "'Train from tags' (method auto runs the trained network combined with the colour "
        "difference, kdmsi-cva; the other methods draw one part alone, to compare), or with "
        "change vector analysis alone (method cva, no model)."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters."""
        self.add_pair()
        self.addParameter(
            QgsProcessingParameterEnum("METHOD", "Method", list(METHODS), defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFile("MODEL", "Model file", extension="pt", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterEnum("DEVICE", "Device", list(DEVICES), defaultValue=0)
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Change probability"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        """Run the worker."""
        options = self.pair(parameters, context)
        options.update(
            method=METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
            model=self.parameterAsFile(parameters, "MODEL", context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            out=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            overwrite=True,
        )
        self.run_worker("detect", options, feedback)
        return {"OUTPUT": options["out"]}


class VectorizeChangeMap(KdmsiAlgorithm):
    """``kdmsi vectorize``."""

    NAME, TITLE = "vectorizechangemap", "Vectorize change map"
    HELP = (
        "Change polygons from a probability raster: pixels at or above the threshold (default: "
        "the one stored by Detect changes, else 0.5); polygons under the minimum area or of "
        "fewer pixels than the smallest polygon size are dropped, and so are change regions "
        "whose strongest pixel stays under the peak ratio times the threshold (weak regions, "
        "mostly false alarms on the maps Detect changes writes)."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters."""
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Change probability"))
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD",
                "Threshold",
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA", "Minimum area (map units²)", QgsProcessingParameterNumber.Double, 0.0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_PIXELS",
                "Smallest polygon (pixels; 0 keeps every one)",
                QgsProcessingParameterNumber.Integer,
                DEFAULTS["min_pixels"],
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "PEAK_RATIO",
                "Keep a change region only where its strongest pixel reaches this many times "
                "the threshold (1 keeps every region)",
                QgsProcessingParameterNumber.Double,
                DEFAULTS["peak_ratio"],
                minValue=1.0,
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", "Change polygons"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        """Run the worker."""
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is None:
            raise QgsProcessingException("probability raster is missing.")
        threshold = parameters.get("THRESHOLD")
        options = {
            "prob": layer.source(),
            "out": self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            "threshold": None
            if threshold is None
            else self.parameterAsDouble(parameters, "THRESHOLD", context),
            "min_area": self.parameterAsDouble(parameters, "MIN_AREA", context) or None,
            "min_pixels": self.parameterAsInt(parameters, "MIN_PIXELS", context),
            "peak_ratio": self.parameterAsDouble(parameters, "PEAK_RATIO", context),
            "overwrite": True,
        }
        self.run_worker("vectorize", options, feedback)
        return {"OUTPUT": options["out"]}


class SuggestTiles(KdmsiAlgorithm):
    """``kdmsi suggest``."""

    NAME, TITLE = "suggesttiles", "Suggest tiles to tag"
    HELP = (
        "Outlines the untagged tiles where a trained model sees the most change (tag these next: "
        "a changed tag confirms its clearest detections, an unchanged one corrects its loudest "
        "false alarms) and the tagged tiles whose tag the model contradicts (look at them again: "
        "the tag may be wrong, or the model has not learned that kind of change)."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters."""
        self.add_pair()
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "TAGS", "Tag layer", [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(QgsProcessingParameterFile("MODEL", "Model file", extension="pt"))
        self.addParameter(
            QgsProcessingParameterNumber("COUNT", "Tiles to suggest", defaultValue=20, minValue=1)
        )
        self.addParameter(
            QgsProcessingParameterEnum("DEVICE", "Device", list(DEVICES), defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Suggestions", "GeoPackage (*.gpkg)")
        )

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        """Run the worker and load the suggestions."""
        options = self.pair(parameters, context)
        tags = self.parameterAsVectorLayer(parameters, "TAGS", context)
        if tags is None:
            raise QgsProcessingException("Choose the tag layer ('Tag layer').")
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        options.update(
            tags=tags.source().split("|")[0],
            model=self.parameterAsFile(parameters, "MODEL", context),
            count=self.parameterAsInt(parameters, "COUNT", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            out=out,
            overwrite=True,
        )
        self.run_worker("suggest", options, feedback)
        details = QgsProcessingContext.LayerDetails(
            "KD-MSI suggestions", context.project(), "OUTPUT"
        )
        context.addLayerToLoadOnCompletion(out, details)
        return {"OUTPUT": out}
