"""The demo job (configs/demo.yaml) end to end on the bundled sample, with 2 training epochs.

Two epochs test the pipeline, not the accuracy (the full demo's figures are in the README).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import yaml

from geounet.config import STAGES, load_job_config
from geounet.job import run_job
from geounet.modelfile import read_model_metadata
from geounet.raster import open_scene
from geounet.sample_data import SENTINEL2_BANDS, brandenburg_s2, demo_job_path

REPO = Path(__file__).resolve().parents[1]


def test_configs_demo_is_the_job_geounet_demo_runs():
    shipped = demo_job_path()
    assert shipped.resolve() == (REPO / "configs" / "demo.yaml").resolve()
    assert yaml.safe_load(shipped.read_text())["name"] == "brandenburg-s2-demo"


@pytest.mark.slow
def test_demo_job_writes_every_output_and_a_rerun_skips_every_stage(tmp_path, qgis_check):
    job = load_job_config(demo_job_path(), out=tmp_path / "demo", overrides={"train.epochs": 2})
    result = run_job(job)
    out = tmp_path / "demo"
    scene = open_scene(brandenburg_s2().band_paths)

    meta = read_model_metadata(result.output("train", "model"))
    assert tuple(meta.bands) == SENTINEL2_BANDS
    for name in ("classes", "probabilities"):
        with rasterio.open(result.output("predict", name)) as src:
            assert src.crs == scene.crs and src.transform == scene.transform
            assert src.shape == scene.shape
    polygons = gpd.read_file(result.output("vectorize", "polygons"), layer="polygons")
    assert polygons.crs == scene.crs and len(polygons) > 0
    assert polygons.is_valid.all() and (polygons.area_m2 >= 500).all()

    metrics = json.loads(result.output("evaluate", "metrics").read_text())
    assert metrics == result.metrics and metrics["scored"] == "test split"
    cm = metrics["confusion_matrix"]["matrix"]
    evaluated = metrics["pixels_evaluated"]
    assert sum(map(sum, cm)) == evaluated > 0
    assert metrics["overall_accuracy"] == pytest.approx(sum(cm[i][i] for i in range(4)) / evaluated)
    for name, row in metrics["per_class"].items():
        k = metrics["classes"].index(name)
        assert row["support"] == sum(cm[k]) and row["predicted"] == sum(r[k] for r in cm)
        for key in ("iou", "f1", "precision", "recall"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0
        if row["iou"] is not None:
            assert row["iou"] == pytest.approx(
                cm[k][k] / (sum(cm[k]) + row["predicted"] - cm[k][k])
            )
    for scores in metrics["objects"]["classes"].values():
        assert scores["tp"] + scores["fp"] == scores["n_pred"]
        assert all(scores[k] is None or 0 <= scores[k] <= 1 for k in ("precision", "recall", "f1"))

    html = result.output("report", "report").read_text()
    for src in re.findall(r'<img[^>]+src="([^"]+)"', html):
        assert (result.output("report", "report").parent / src).exists(), src
    item = json.loads((out / "item.json").read_text())
    assert item["type"] == "Feature" and item["id"] == "brandenburg-s2-demo"
    for asset in item["assets"].values():
        assert (out / asset["href"]).exists(), asset["href"]

    check = qgis_check(
        result.output("predict", "classes"), result.output("predict", "probabilities"),
        result.output("vectorize", "polygons"), result.output("tile", "index"),
        "--require-cog", "--json",
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr

    again = run_job(load_job_config(out / "job.yaml"))
    assert [s.status for s in again.stages] == ["skipped"] * len(STAGES)
