"""Make geounet importable: the copy bundled in the plugin zip, else an installed geounet."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BUNDLED = Path(__file__).resolve().parent / "ext"
"""Folder of the geounet package copied into the plugin by scripts/build_qgis_plugin.py."""

REQUIRED = ("numpy", "rasterio", "onnxruntime", "shapely", "pyproj", "pyogrio")
"""Python packages the plugin needs in QGIS's Python besides QGIS itself (torch is optional)."""

INSTALL_HINT = (
    "install them into QGIS's Python: on Linux `python3 -m pip install --user onnxruntime "
    "rasterio shapely pyproj pyogrio`; on Windows in the OSGeo4W Shell `python -m pip install "
    "onnxruntime rasterio shapely pyproj pyogrio`; on macOS "
    "`/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install onnxruntime rasterio "
    "shapely pyproj pyogrio` (see geounet's README, 'Use it in QGIS')"
)


def ensure_geounet() -> None:
    """Put the bundled geounet first on ``sys.path`` (an installed one serves otherwise)."""
    if (BUNDLED / "geounet").is_dir() and str(BUNDLED) not in sys.path:
        sys.path.insert(0, str(BUNDLED))


def missing_packages() -> list[str]:
    """The required packages that QGIS's Python cannot import."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def has_torch() -> bool:
    """Whether torch (and so the model-file export) is available in QGIS's Python."""
    return importlib.util.find_spec("torch") is not None
