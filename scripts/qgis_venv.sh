#!/usr/bin/env bash
# A venv for Debian's PyQGIS (/usr/bin/python3) with what the geounet QGIS plugin needs besides
# QGIS: onnxruntime, rasterio, shapely, pyproj, pyogrio (no torch). geounet itself comes from the checkout
# through PYTHONPATH, as it would from the plugin's bundled copy or a `pip install --no-deps`.
# Idempotent and quick on reruns: a stamp file records the requirements it was built with.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GEOUNET_QGIS_VENV:-.qgis-venv}
# numpy<2: Debian's python3-gdal (used by QGIS's Processing) is built against numpy 1.x;
# attrs>=23.1: affine 3 breaks with Debian's attrs 22.2 (its Affine cannot cache _astuple).
REQS="onnxruntime>=1.16 rasterio>=1.3.9 shapely>=2.0 pyproj>=3.6 pyogrio>=0.7 affine>=3.0 attrs>=23.1 tqdm pillow numpy<2"
if [ -f "$VENV/.geounet-reqs" ] && [ "$(cat "$VENV/.geounet-reqs")" = "$REQS" ]; then
  exit 0
fi
/usr/bin/python3 -m venv --system-site-packages "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q $REQS
echo "$REQS" > "$VENV/.geounet-reqs"
