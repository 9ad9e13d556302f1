"""The notebooks: committed without outputs, public API only, and they run top to bottom.

Each notebook is executed with nbclient in a temporary working folder (it writes everything
under ``out/`` there) on a kernel that runs this interpreter, so a fresh virtual environment
needs no ``ipykernel install``. Executed copies are kept in pytest's ``tmp_path`` for
debugging. Run only these: ``pytest tests/test_notebooks.py -p no:xdist``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPLORE = "01_explore_scene_and_chips.ipynb"
PIPELINE = "02_train_predict_map.ipynb"
KERNEL = "python3"
CELL_TIMEOUT_S = 900

# `geounet._plots`, `geounet.demo._split_reference`, `from geounet.demo import _x`: notebooks
# show the public API only.
PRIVATE = re.compile(r"geounet(\.\w+)*\._\w+|from\s+geounet\S*\s+import\s+.*\b_\w+")


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _code(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", [EXPLORE, PIPELINE])
def test_notebook_is_committed_clean(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == KERNEL
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{name}: clear the outputs before committing (see notebooks/README.md)"
            )
    code = _code(nb)
    assert not PRIVATE.search(code), f"{name} uses a private name: {PRIVATE.search(code)[0]}"


@pytest.fixture
def kernel_on_this_python(tmp_path_factory, monkeypatch):
    """A ``python3`` kernelspec that runs ``sys.executable``, found before any user's own.

    ``JUPYTER_PATH`` comes first in Jupyter's search path, so a ``python3`` kernel registered
    in ``~/.local/share/jupyter`` (pointing at another Python) is not used.
    """
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (geounet tests)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    # Connection files and IPython's profile in the temporary folder too: no writable HOME
    # needed, and no user startup files change what the notebooks do.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(root / "ipython"))
    # The kernel's default inline backend, so figures become image outputs (CI may set Agg).
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def _execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    """Run a notebook with ``workdir`` as its working folder; keep the executed copy there."""
    nb = _read(name)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()  # raises CellExecutionError, with the traceback, on the first error
    finally:
        nbformat.write(nb, workdir / name)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{name}: {[(e.ename, e.evalue) for e in errors]}"
    return nb


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_explore_notebook_runs_and_writes_chips(tmp_path, kernel_on_this_python):
    nb = _execute(EXPLORE, tmp_path)
    out = tmp_path / "out"
    chips = out / "chips"
    for name in ("index.gpkg", "stats.json", "classes.json", "tiling.json"):
        assert (chips / name).is_file(), name
    assert len(list((chips / "images").glob("*.tif"))) == 72
    assert len(list((chips / "labels").glob("*.tif"))) == 72
    assert _images(nb) >= 7  # maps, histogram, chips, class counts
    assert not (NOTEBOOKS / "out").exists(), "the notebook wrote into the repository"


@pytest.mark.slow
def test_pipeline_notebook_trains_predicts_and_evaluates(tmp_path, kernel_on_this_python):
    import geopandas as gpd
    import rasterio

    nb = _execute(PIPELINE, tmp_path)
    out = tmp_path / "out"
    assert (out / "model" / "model.safetensors").is_file()
    with rasterio.open(out / "predict" / "classes.tif") as src:
        assert src.crs.to_epsg() == 32633 and src.shape == (768, 1536)
    polygons = gpd.read_file(out / "predict" / "polygons.gpkg", layer="polygons")
    assert len(polygons) > 0 and polygons.is_valid.all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["mean"]["iou"] <= 1.0 and metrics["pixels_evaluated"] > 0
    assert _images(nb) >= 5  # curves, maps, polygons, confusion matrix, test chips
    assert not (NOTEBOOKS / "out").exists(), "the notebook wrote into the repository"
