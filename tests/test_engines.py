"""The onnx engine: same pipeline, same outputs as the torch engine, and no torch needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
from _models import sample_band_paths, write_sample_crop
from click.testing import CliRunner

from geounet.cli.main import cli
from geounet.engines import OnnxEngine, TorchEngine, open_engine, resolve_engine
from geounet.errors import ConfigError
from geounet.inference import PredictOptions, predict_scene

MAX_CLASS_MISMATCH = 1e-4
"""Share of pixels whose class may differ between engines: only argmax near-ties, where float32
rounding of the two runtimes (about 1e-6) can swap the two top classes."""


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.crs, ds.transform


def test_onnx_engine_predicts_the_sample_as_the_torch_engine_does(sample_model, tmp_path):
    model_path, onnx_path = sample_model
    scene = sample_band_paths()
    a = predict_scene(str(model_path), scene, tmp_path / "torch", probabilities=True,
                      device="cpu")  # fmt: skip
    b = predict_scene(str(onnx_path), scene, tmp_path / "onnx", probabilities=True)
    (ca,), crs_a, tr_a = _read(a.classes)
    (cb,), crs_b, tr_b = _read(b.classes)
    assert crs_a == crs_b and tr_a == tr_b
    assert len(np.unique(ca)) == 4  # the comparison is not between two constant maps
    assert (ca != cb).mean() <= MAX_CLASS_MISMATCH
    pa, pb = _read(a.probabilities)[0].astype(int), _read(b.probabilities)[0].astype(int)
    # Probabilities are compared where the two class maps agree: the rare pixels whose class
    # differs (bounded above) may differ by any amount, and one CI run saw a 255 step at such a
    # pixel with an otherwise equal map. Everywhere else, only uint8 rounding of 1e-5 apart.
    same = ca == cb
    diff = np.abs(pa - pb)[:, same]
    assert diff.max() <= 1, f"{int((diff > 1).sum())} probability values differ by more than 1"
    assert (b.qml.read_text() == a.qml.read_text()) and "field" in b.qml.read_text()


def test_onnx_engine_writes_255_on_nodata_like_torch(sample_model, tmp_path):
    model_path, onnx_path = sample_model
    scene = write_sample_crop(tmp_path / "crop.tif", nodata_rows=40)
    a = predict_scene(str(model_path), scene, tmp_path / "t", device="cpu")
    b = predict_scene(str(onnx_path), scene, tmp_path / "o", engine="onnx")
    (ca,), _, _ = _read(a.classes)
    (cb,), _, _ = _read(b.classes)
    assert (cb[:40] == 255).all() and (cb[40:] != 255).all()
    assert (ca != cb).mean() <= MAX_CLASS_MISMATCH


def test_onnx_engine_tta_matches_torch_tta(sample_model):
    model_path, onnx_path = sample_model
    options = PredictOptions(tta=True, device="cpu")
    torch_engine, spec = open_engine(str(model_path), None, options)
    onnx_engine, onnx_spec = open_engine(str(onnx_path), None, options)
    assert isinstance(torch_engine, TorchEngine) and isinstance(onnx_engine, OnnxEngine)
    assert onnx_spec.bands == spec.bands and onnx_spec.scheme == spec.scheme
    rng = np.random.default_rng(0)
    raw = rng.uniform(500, 3000, (2, 4, 48, 40)).astype(np.float32)
    normalised = (raw - spec.mean[:, None, None]) / spec.std[:, None, None]
    expected = torch_engine(normalised)
    got = onnx_engine(raw)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5


def test_engine_is_chosen_by_suffix_and_mismatches_are_refused(sample_model, tmp_path):
    model_path, onnx_path = sample_model
    assert resolve_engine(str(onnx_path), "auto") == "onnx"
    assert resolve_engine(model_path, "auto") == "torch"
    with pytest.raises(ConfigError, match="geounet export"):
        resolve_engine(model_path, "onnx")
    with pytest.raises(ConfigError, match="ONNX file"):
        resolve_engine(onnx_path, "torch")
    with pytest.raises(ConfigError, match="engine must be one of"):
        PredictOptions(engine="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="compile"):
        predict_scene(str(onnx_path), sample_band_paths(), tmp_path / "x", compile=True)
    assert not (tmp_path / "x").exists()


def test_geounet_predict_engine_onnx_from_the_cli(sample_model, tmp_path):
    _, onnx_path = sample_model
    scene = write_sample_crop(tmp_path / "crop.tif")
    out = tmp_path / "pred"
    run = CliRunner().invoke(cli, ["predict", str(onnx_path), str(scene), "--out", str(out),
                                   "--engine", "onnx", "--probabilities"])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert (out / "classes.tif").exists() and (out / "probabilities.tif").exists()
    run = CliRunner().invoke(cli, ["predict", str(onnx_path), str(scene), "--out", str(out),
                                   "--engine", "torch"])  # fmt: skip
    assert run.exit_code == 1 and "ONNX file" in run.output


NO_TORCH = textwrap.dedent(
    """
    import json, sys
    # Any `import torch` (or of a library that needs it) now fails, as without torch installed.
    for name in ("torch", "torchvision", "torchgeo", "lightning", "safetensors.torch"):
        sys.modules[name] = None
    from geounet.inference import predict_scene
    from geounet.vectorize import vectorize_raster
    model, scene, out = sys.argv[1:4]
    result = predict_scene(model, scene, out, probabilities=True)
    gpkg = vectorize_raster(result.classes, out + "/polygons.gpkg",
                            probabilities_path=result.probabilities)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning")
                    and sys.modules[m] is not None)
    print(json.dumps({"classes": str(result.classes), "gpkg": str(gpkg), "torch": loaded}))
    """
)


def test_predict_and_vectorize_run_without_torch(sample_model, tmp_path):
    _, onnx_path = sample_model
    scene = write_sample_crop(tmp_path / "crop.tif")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(onnx_path), str(scene), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["torch"] == []
    expected = predict_scene(str(onnx_path), scene, tmp_path / "here")
    np.testing.assert_array_equal(_read(report["classes"])[0], _read(expected.classes)[0])
    import pyogrio

    info = pyogrio.read_info(report["gpkg"], layer="polygons")
    assert info["features"] > 0 and "mean_prob" in list(info["fields"])


def test_progress_reports_chips_and_raising_in_it_cancels_without_output(sample_model, tmp_path):
    _, onnx_path = sample_model
    scene = write_sample_crop(tmp_path / "crop.tif")
    seen = []
    predict_scene(
        str(onnx_path), scene, tmp_path / "done", progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1][0] == seen[-1][1] > 1 and [d for d, _ in seen] == sorted(d for d, _ in seen)

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        predict_scene(str(onnx_path), scene, tmp_path / "stopped", progress=stop)
    # No output set and no work folder: the run published nothing.
    assert not (tmp_path / "stopped").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".stopped")]


def test_many_scenes_on_dask_refuse_an_onnx_file_before_any_task(sample_model, tmp_path):
    from geounet.distributed import predict_scenes

    _, onnx_path = sample_model
    with pytest.raises(ConfigError, match="torch engine only"):
        predict_scenes(str(onnx_path), [write_sample_crop(tmp_path / "a.tif")], tmp_path / "out")
    assert not (tmp_path / "out").exists()
