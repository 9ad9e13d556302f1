"""The "geounet" Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider

from . import _deps


class GeounetProvider(QgsProcessingProvider):
    """Predict scene, Vectorize classes and (with torch) Export model to ONNX."""

    def id(self) -> str:  # noqa: D102
        return "geounet"

    def name(self) -> str:  # noqa: D102
        return "geounet"

    def longName(self) -> str:  # noqa: D102, N802
        return "geounet: U-Net segmentation of multispectral scenes"

    def loadAlgorithms(self) -> None:  # noqa: D102, N802
        _deps.ensure_geounet()
        from .algorithms import ExportOnnxAlgorithm, PredictSceneAlgorithm, VectorizeAlgorithm

        self.addAlgorithm(PredictSceneAlgorithm())
        self.addAlgorithm(VectorizeAlgorithm())
        if _deps.has_torch():
            self.addAlgorithm(ExportOnnxAlgorithm())
