#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine with Python 3.11, then run it.
# Used by the README's quick start and by CI (.ci/run). Idempotent: reruns reuse the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision first: on machines with a local wheel cache this avoids a multi-GB download.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>/dev/null \
  || .venv/bin/python -m pip install -q "torch>=2.4" "torchvision>=0.19"
.venv/bin/python -m pip install -q -e ".[dev]"

# Real QGIS (Debian's PyQGIS) and GDAL's command-line tools prove the outputs load in QGIS.
if ! /usr/bin/python3 -c "import qgis.core" 2>/dev/null || ! command -v gdal_retile.py >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-qgis qgis-providers gdal-bin python3-gdal >/dev/null
  else
    echo "note: install python3-qgis qgis-providers gdal-bin (as root) for the QGIS tests" >&2
  fi
fi

# The QGIS plugin test runs the plugin in Debian's PyQGIS without torch: a venv for it (quick
# when it exists already).
if /usr/bin/python3 -c "import qgis.core" 2>/dev/null; then
  scripts/qgis_venv.sh
fi

# -n 2: both cores; pytest's exit status 5 (no tests collected) is a failure here too.
set +e
.venv/bin/python -m pytest -n 2 --durations=15 "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
