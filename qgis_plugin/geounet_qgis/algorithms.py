"""The geounet Processing algorithms: thin wrappers around one geounet library call each.

They run geounet's own pipeline (blended chips, memory bounded by one strip of rows, nodata as
255), report progress through the :class:`QgsProcessingFeedback` and stop when it is cancelled;
a cancelled or failed run publishes nothing (geounet writes under temporary names).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from . import _deps


def _check_deps() -> None:
    missing = _deps.missing_packages()
    if missing:
        raise QgsProcessingException(
            f"geounet needs the Python packages {missing}, which QGIS's Python lacks; "
            f"{_deps.INSTALL_HINT}."
        )


def _raster_path(layer: Any, name: str) -> str:
    path = layer.source().split("|")[0] if layer is not None else ""
    if not path or not Path(path).is_file():
        raise QgsProcessingException(
            f"{name}: geounet reads rasters from files (GeoTIFF, JP2, VRT ...), but this layer's "
            f"source is {layer.source() if layer else None!r}; save the layer to a file first."
        )
    return path


def _run_geounet(call: Any) -> Any:
    """Run a geounet call, turning its errors into messages Processing shows to the user."""
    from geounet.errors import GeounetError

    try:
        return call()
    except _Cancelled:
        raise QgsProcessingException("cancelled; nothing was written.") from None
    except GeounetError as exc:
        raise QgsProcessingException(str(exc)) from exc


class _Cancelled(Exception):
    """Raised from the progress callback when the user cancels."""


class _Algorithm(QgsProcessingAlgorithm):
    """Shared naming for geounet algorithms."""

    _id = ""
    _name = ""
    _help = ""

    def name(self) -> str:  # noqa: D102
        return self._id

    def displayName(self) -> str:  # noqa: D102, N802
        return self._name

    def shortHelpString(self) -> str:  # noqa: D102, N802
        return self._help

    def createInstance(self) -> QgsProcessingAlgorithm:  # noqa: D102, N802
        return type(self)()


class PredictSceneAlgorithm(_Algorithm):
    """A raster layer and an ONNX (or model) file -> a class COG with names and colours."""

    _id = "predictscene"
    _name = "Predict scene"
    _help = (
        "Predicts every pixel of a multispectral raster layer with a geounet model: an ONNX "
        "file from `geounet export` (runs on onnxruntime, no torch) or a .safetensors model "
        "file (needs torch). The layer's bands must be the model's bands in its order. Chips "
        "overlap and are blended without seams; memory stays bounded by one strip of rows; "
        "nodata pixels are 255. The output is a Cloud-Optimized GeoTIFF with the class names "
        "and colours (and a .qml style); optionally uint8 probabilities (0-255) per class."
    )

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: D102, N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Scene (multi-band raster)"))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", "Model (.onnx, or .safetensors with torch)",
                fileFilter="geounet models (*.onnx *.safetensors)",
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "CHIP_SIZE", "Chip size in pixels (0: the model's)",
                QgsProcessingParameterNumber.Integer, 0, minValue=0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "BATCH_SIZE", "Chips per batch", QgsProcessingParameterNumber.Integer, 4,
                minValue=1,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterBoolean("TTA", "Average the 8 flips/rotations (8x slower)", False)
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Classes"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "PROBABILITIES", "Probabilities", optional=True, createByDefault=False
            )
        )

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict:  # noqa: D102, N802
        _check_deps()
        from geounet.inference import PredictOptions, predict_scene

        scene = _raster_path(self.parameterAsRasterLayer(parameters, "INPUT", context), "Scene")
        model = self.parameterAsFile(parameters, "MODEL", context)
        out = Path(self.parameterAsOutputLayer(parameters, "OUTPUT", context))
        probs_out = self.parameterAsOutputLayer(parameters, "PROBABILITIES", context)
        if out.suffix.lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(f"Classes: write a GeoTIFF (.tif), not {out.name}.")
        options = PredictOptions(
            chip_size=self.parameterAsInt(parameters, "CHIP_SIZE", context) or None,
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            tta=self.parameterAsBool(parameters, "TTA", context),
            probabilities=bool(probs_out),
            device="cpu",
        )

        def progress(done: int, total: int) -> None:
            if feedback.isCanceled():
                raise _Cancelled
            feedback.setProgress(100.0 * done / max(total, 1))

        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".geounet-{out.stem}-", dir=out.parent))
        try:
            feedback.pushInfo(f"predicting {scene} with {model}")
            result = _run_geounet(
                lambda: predict_scene(model, scene, work, options=options, progress=progress)
            )
            # The sidecars follow the class raster's name, so QGIS finds names, colours, style.
            os.replace(result.classes.with_name("classes.tif.aux.xml"), f"{out}.aux.xml")
            os.replace(result.qml, out.with_suffix(".qml"))
            os.replace(result.classes, out)
            if result.probabilities is not None:
                os.replace(result.probabilities, probs_out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {"OUTPUT": str(out), "PROBABILITIES": probs_out or None}


class VectorizeAlgorithm(_Algorithm):
    """A class raster -> a GeoPackage of polygons styled in the class colours."""

    _id = "vectorizeclasses"
    _name = "Vectorize classes"
    _help = (
        "Polygonises a geounet class raster block by block (polygons crossing block seams are "
        "merged), with class id, class name, area (m2) and, given the probabilities raster, "
        "the mean confidence. The GeoPackage carries a QGIS style in the class colours."
    )

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: D102, N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Class raster"))
        self.addParameter(
            QgsProcessingParameterRasterLayer("PROBABILITIES", "Probabilities", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA", "Drop polygons smaller than (m2)",
                QgsProcessingParameterNumber.Double, 0.0, minValue=0.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "SIMPLIFY", "Simplification tolerance (CRS units)",
                QgsProcessingParameterNumber.Double, 0.0, minValue=0.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterVectorDestination("OUTPUT", "Polygons (GeoPackage)")
        )

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict:  # noqa: D102, N802
        _check_deps()
        from geounet.vectorize import LAYER_NAME, vectorize_raster

        classes = _raster_path(self.parameterAsRasterLayer(parameters, "INPUT", context), "Class")
        probs_layer = self.parameterAsRasterLayer(parameters, "PROBABILITIES", context)
        probs = _raster_path(probs_layer, "Probabilities") if probs_layer else None
        out = Path(self.parameterAsOutputLayer(parameters, "OUTPUT", context))
        if out.suffix.lower() != ".gpkg":
            raise QgsProcessingException(f"Polygons: write a GeoPackage (.gpkg), not {out.name}.")
        feedback.pushInfo(f"vectorizing {classes}")
        _run_geounet(
            lambda: vectorize_raster(
                classes, out, probabilities_path=probs,
                min_area_m2=self.parameterAsDouble(parameters, "MIN_AREA", context),
                simplify_m=self.parameterAsDouble(parameters, "SIMPLIFY", context),
            )
        )  # fmt: skip
        feedback.setProgress(100)
        return {"OUTPUT": f"{out}|layername={LAYER_NAME}"}


class ExportOnnxAlgorithm(_Algorithm):
    """A model file -> ONNX (listed only where torch imports in QGIS's Python)."""

    _id = "exportonnx"
    _name = "Export model to ONNX"
    _help = (
        "Exports a geounet model file (.safetensors) to ONNX: raw band values in, "
        "normalisation and nodata mask in the graph, softmax probabilities out, with the "
        "metadata the Deepness plugin and geounet read. Needs torch in QGIS's Python."
    )

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: D102, N802
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", "Model file", fileFilter="geounet model files (*.safetensors)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "ONNX file", "ONNX (*.onnx)")
        )

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict:  # noqa: D102, N802
        from geounet.export import export_onnx

        model = self.parameterAsFile(parameters, "MODEL", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        path = _run_geounet(lambda: export_onnx(model, out))
        feedback.setProgress(100)
        return {"OUTPUT": str(path)}
