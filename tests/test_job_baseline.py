"""A job with the random forest baseline and spatial cross-validation, end to end."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from test_job import write_job

from geounet.config import load_job_config
from geounet.job import run_job


def test_job_scores_the_forest_beside_the_model_and_reports_folds(tmp_path):
    path = write_job(
        tmp_path,
        train={"folds": 3, "fold_models": False},
        evaluate={"baseline": "random_forest"},
    )
    result = run_job(load_job_config(path))
    out = result.out_dir
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    unet, rf = metrics, metrics["baseline"]
    # Same reference, same pixels: identical totals and per-class reference counts.
    assert unet["pixels_evaluated"] == rf["pixels_evaluated"] > 0
    support = {n: unet["per_class"][n]["support"] for n in unet["classes"]}
    assert support == {n: rf["per_class"][n]["support"] for n in rf["classes"]}
    assert rf["baseline"]["name"] == "random_forest" and rf["baseline"]["trees"] == 100
    forest_classes = result.output("evaluate", "baseline_classes")
    with (
        rasterio.open(forest_classes) as f,
        rasterio.open(tmp_path / "scene.tif") as s,
        rasterio.open(result.output("predict", "classes")) as u,
    ):
        assert (f.crs, f.transform, f.shape) == (s.crs, s.transform, s.shape)
        assert f.tags()["GEOUNET_CLASSES"] == u.tags()["GEOUNET_CLASSES"]
        nodata = s.read(1) == 0  # the scene's 6 x 6 nodata corner
        assert np.all(f.read(1)[nodata] == 255) and not np.any(f.read(1)[~nodata] == 255)
    cv = metrics["cross_validation"]
    assert cv["folds"] == 3 and set(cv["summary"]) == {"unet", "random_forest"}
    assert cv["summary"]["unet"]["miou"]["n"] == 3
    assert not any((out / "train" / "folds").glob("fold_*"))  # scores only
    report = (out / "report" / "report.html").read_text()
    assert "Model vs random forest" in report and "Spatial cross-validation" in report
    assert (out / "report" / "baseline_iou.png").stat().st_size > 0
    assert (out / "report" / "cv_iou.png").stat().st_size > 0
