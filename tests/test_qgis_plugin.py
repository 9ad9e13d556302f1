"""The geounet QGIS plugin in real QGIS (Debian's PyQGIS 3.22, headless), without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _models import write_sample_crop
from click.testing import CliRunner

from geounet.classes import ClassScheme
from geounet.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("_qgis_plugin_run.py")

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def qgis_python() -> Path:
    """The QGIS venv's python (scripts/qgis_venv.sh makes it; CI runs that in scripts/test.sh)."""
    python = REPO / ".qgis-venv" / "bin" / "python"
    has_qgis = (
        Path("/usr/bin/python3").exists()
        and subprocess.run(
            ["/usr/bin/python3", "-c", "import qgis.core"], capture_output=True
        ).returncode
        == 0
    )
    if has_qgis and not python.exists():
        subprocess.run([str(REPO / "scripts" / "qgis_venv.sh")], check=False, timeout=600)
    if not (has_qgis and python.exists()):
        if os.environ.get("CI"):
            pytest.fail("QGIS (python3-qgis) or the QGIS venv (scripts/qgis_venv.sh) missing in CI")
        pytest.skip("Debian's PyQGIS or .qgis-venv missing (run scripts/qgis_venv.sh)")
    return python


def test_provider_predicts_in_qgis_as_geounet_predict_does(sample_model, qgis_python, tmp_path):
    _, onnx_path = sample_model
    built = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_qgis_plugin.py"), "--out",
         str(tmp_path / "dist")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    plugins = tmp_path / "plugins"
    with zipfile.ZipFile(built.stdout.strip()) as zf:
        zf.extractall(plugins)
    scene = write_sample_crop(tmp_path / "scene.tif", nodata_rows=16)
    out = tmp_path / "qgis"
    out.mkdir()
    # Only the unzipped plugin on the path: the bundled geounet copy must be enough.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    run = subprocess.run(
        [str(qgis_python), str(RUNNER), str(plugins), str(onnx_path), str(scene), str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    lines = [x for x in run.stdout.splitlines() if x.startswith("REPORT ")]
    assert run.returncode == 0 and lines, run.stdout[-2000:] + run.stderr[-4000:]
    report = json.loads(lines[-1][len("REPORT ") :])

    assert report["torch_importable"] is False  # the plugin runs where torch is absent
    assert report["algorithms"] == ["geounet:predictscene", "geounet:vectorizeclasses"]
    assert report["geounet_file"].startswith(str(plugins))
    assert report["progress"] and report["progress"][-1] == pytest.approx(100.0)
    layer = report["layer"]
    assert layer["valid"] and layer["crs"] == "EPSG:32633" and layer["renderer"] == "paletted"
    scheme = ClassScheme.default()
    assert [(c["value"], c["label"], c["color"]) for c in layer["classes"]] == [
        (c.id, c.name, c.hex) for c in scheme.classes
    ]
    vector = report["vector"]
    assert vector["valid"] and vector["features"] > 0 and "mean_prob" in vector["fields"]
    assert vector["renderer"] == "categorizedSymbol"
    assert "cancelled" in report["cancel"] and report["left_after_cancel"] == []

    # The same inputs through `geounet predict`: the same pixels, CRS and transform.
    cli_out = tmp_path / "cli"
    res = CliRunner().invoke(
        cli, ["predict", str(onnx_path), str(scene), "--out", str(cli_out), "--probabilities"]
    )
    assert res.exit_code == 0, res.output
    for qgis_file, cli_file in [("qgis_classes.tif", "classes.tif"),
                                ("qgis_probabilities.tif", "probabilities.tif")]:  # fmt: skip
        with rasterio.open(out / qgis_file) as q, rasterio.open(cli_out / cli_file) as c:
            assert q.crs == c.crs and q.transform == c.transform
            np.testing.assert_array_equal(q.read(), c.read())
    with rasterio.open(out / "qgis_classes.tif") as q:
        assert (q.read(1)[:16] == 255).all()
