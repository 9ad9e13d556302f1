"""Run the geounet plugin's Processing algorithms in real QGIS (headless); print a JSON report.

Run by tests/test_qgis_plugin.py with the QGIS venv's python (Debian's PyQGIS, no torch):

    python _qgis_plugin_run.py PLUGINS_DIR MODEL.onnx SCENE.tif OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
plugins_dir, model, scene, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
sys.path.insert(0, plugins_dir)
sys.path.append("/usr/share/qgis/python/plugins")  # Processing itself

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()
import geounet_qgis  # noqa: E402
import processing  # noqa: E402

plugin = geounet_qgis.classFactory(None)
plugin.initProcessing()
report: dict = {"torch_importable": True}
try:
    import torch  # noqa: F401
except ImportError:
    report["torch_importable"] = False
registry = QgsApplication.processingRegistry()
report["algorithms"] = sorted(a.id() for a in registry.providerById("geounet").algorithms())


class Recorder(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []
        self.progressChanged.connect(self.values.append)


feedback = Recorder()
classes = out / "qgis_classes.tif"
probs = out / "qgis_probabilities.tif"
result = processing.run(
    "geounet:predictscene",
    {"INPUT": scene, "MODEL": model, "OUTPUT": str(classes), "PROBABILITIES": str(probs)},
    feedback=feedback,
)
report["predict"] = {k: str(v) for k, v in result.items()}
report["progress"] = feedback.values
layer = QgsRasterLayer(str(classes), "classes")
renderer = layer.renderer()
report["layer"] = {
    "valid": layer.isValid(),
    "crs": layer.crs().authid(),
    "renderer": renderer.type(),
    "classes": [
        {"value": c.value, "label": c.label, "color": c.color.name()} for c in renderer.classes()
    ]
    if renderer.type() == "paletted"
    else [],
}
import geounet  # noqa: E402

report["geounet_file"] = geounet.__file__

gpkg = out / "qgis_polygons.gpkg"
result = processing.run(
    "geounet:vectorizeclasses",
    {"INPUT": str(classes), "PROBABILITIES": str(probs), "OUTPUT": str(gpkg)},
    feedback=QgsProcessingFeedback(),
)
vector = QgsVectorLayer(result["OUTPUT"], "polygons")
report["vector"] = {
    "valid": vector.isValid(),
    "features": vector.featureCount(),
    "fields": [f.name() for f in vector.fields()],
    "renderer": vector.renderer().type(),
    "styled": vector.loadDefaultStyle()[1],
}

cancelled = QgsProcessingFeedback()
cancelled.cancel()
try:
    processing.run(
        "geounet:predictscene",
        {"INPUT": scene, "MODEL": model, "OUTPUT": str(out / "cancelled.tif")},
        feedback=cancelled,
    )
    report["cancel"] = "ran to the end"
except QgsProcessingException as exc:
    report["cancel"] = str(exc)
report["left_after_cancel"] = sorted(p.name for p in out.iterdir() if "cancel" in p.name)
print("REPORT " + json.dumps(report))
sys.stdout.flush()
os._exit(0)  # QGIS's exit handlers can crash headless; the report is out
