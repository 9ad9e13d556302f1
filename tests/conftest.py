"""Shared fixtures: small real GeoTIFF scenes written on the fly (see geounet.sample_data)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from geounet.sample_data import make_synthetic_scene

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def utm_scene(tmp_path: Path) -> Path:
    """A 4-band uint16 UTM scene of odd size whose pixels encode their coordinates."""
    return make_synthetic_scene(tmp_path / "utm.tif", shape=(301, 257), count=4, crs="EPSG:32633")


@pytest.fixture
def geographic_scene(tmp_path: Path) -> Path:
    """The same in EPSG:4326 (degrees)."""
    return make_synthetic_scene(tmp_path / "geo.tif", shape=(133, 199), count=3, crs="EPSG:4326")


def qgis_check_path() -> Path | None:
    """The shared QGIS checker, beside the checkout (../shared) or named by GEOUNET_QGIS_CHECK."""
    env = os.environ.get("GEOUNET_QGIS_CHECK")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "tools" / "qgis" / "qgis_check.py")
    return next((p for p in candidates if p.exists()), None)


@pytest.fixture(scope="session")
def qgis_check():
    """Run the real QGIS (Debian's PyQGIS) on files; returns a callable -> CompletedProcess.

    CI installs QGIS, so there a missing QGIS fails; on a developer machine without it the
    test is skipped with the reason.
    """
    script = qgis_check_path()
    python = Path("/usr/bin/python3")
    ok = (
        script is not None
        and python.exists()
        and subprocess.run([str(python), "-c", "import qgis.core"], capture_output=True).returncode
        == 0
    )
    if not ok:
        if os.environ.get("CI"):
            pytest.fail("QGIS (python3-qgis) or shared/tools/qgis/qgis_check.py missing in CI")
        pytest.skip(
            "Debian's PyQGIS is not installed (apt-get install python3-qgis qgis-providers)"
        )

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        return subprocess.run(
            [str(python), str(script), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    return run


@pytest.fixture
def gdal_bin() -> str:
    """Path of gdalinfo (Debian's gdal-bin), for tests that cross-check with GDAL's tools."""
    exe = shutil.which("gdalinfo")
    if exe is None:
        pytest.skip("gdal-bin not installed")
    return exe


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny U-Net fitted to the bundled sample (model.safetensors) and its ONNX export."""
    from _models import make_sample_model_file

    from geounet.export import export_onnx

    folder = tmp_path_factory.mktemp("sample-model")
    model = make_sample_model_file(folder)
    return model, export_onnx(model, folder / "model.onnx")
