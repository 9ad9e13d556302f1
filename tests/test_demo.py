"""The demo job end to end on the bundled sample (2 epochs: the pipeline, not the accuracy)."""

from __future__ import annotations

import json

import geopandas as gpd
import pytest
import rasterio

from geounet.demo import run_demo
from geounet.modelfile import read_model_metadata
from geounet.raster import open_scene
from geounet.sample_data import SENTINEL2_BANDS, brandenburg_s2


@pytest.mark.slow
def test_demo_runs_every_stage_and_keeps_the_crs(tmp_path, qgis_check):
    result = run_demo(tmp_path / "demo", epochs=2)
    scene = open_scene(brandenburg_s2().band_paths)
    meta = read_model_metadata(result.model)
    assert tuple(meta.bands) == SENTINEL2_BANDS
    with rasterio.open(result.classes) as c:
        assert c.crs == scene.crs and c.transform == scene.transform
        assert c.shape == scene.shape
        assert set(int(v) for v in c.read(1, out_shape=(96, 192)).ravel()) <= {0, 1, 2, 3}
    polygons = gpd.read_file(result.polygons, layer="polygons")
    assert polygons.crs == scene.crs and len(polygons) > 0
    assert polygons.is_valid.all() and (polygons.area_m2 >= 500).all()
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert 0.0 <= metrics["mean"]["iou"] <= 1.0
    cm = metrics["confusion_matrix"]["matrix"]
    assert sum(map(sum, cm)) == metrics["pixels_evaluated"] > 0
    diag = sum(cm[i][i] for i in range(len(cm)))
    assert metrics["overall_accuracy"] == pytest.approx(diag / metrics["pixels_evaluated"])
    run = qgis_check(result.classes, result.polygons, "--require-cog")
    assert run.returncode == 0, run.stdout + run.stderr
