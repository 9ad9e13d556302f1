"""Build the installable QGIS plugin zip: qgis_plugin/geounet_qgis plus a copy of geounet.

QGIS's "Install from ZIP" unpacks it into the profile's plugins folder; the bundled geounet
(under ``geounet_qgis/ext``) needs only numpy, rasterio, onnxruntime, shapely, pyproj and
pyogrio in QGIS's Python, not torch. The sample scene is left out to keep the zip small.

    python scripts/build_qgis_plugin.py [--out dist/]
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "qgis_plugin" / "geounet_qgis"
PACKAGE = ROOT / "geounet"
SKIP_DIRS = {"__pycache__", "sample", "ext"}


def _files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith(".pyc")]
    return out


def _version() -> str:
    for line in (PLUGIN / "metadata.txt").read_text().splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("metadata.txt has no version= line")


def build_zip(out_dir: Path) -> Path:
    """Write ``geounet_qgis-<version>.zip`` into ``out_dir`` (atomically) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"geounet_qgis-{_version()}.zip"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in _files(PLUGIN):
                zf.write(path, Path("geounet_qgis") / path.relative_to(PLUGIN))
            for path in _files(PACKAGE):
                zf.write(path, Path("geounet_qgis/ext/geounet") / path.relative_to(PACKAGE))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main() -> None:
    """Command line: build the zip into ``--out`` and print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    print(build_zip(parser.parse_args().out))


if __name__ == "__main__":
    main()
