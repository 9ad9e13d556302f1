"""The demo job: the whole pipeline on the bundled real Sentinel-2 sample, offline.

Tiles the 13 bands (stacked to 10 m) with the OSM land-use labels mapped to field / water /
building / other, trains a small U-Net on the spatial train split, predicts the whole scene,
polygonises the class map and evaluates it on the test split. Every stage's outputs go to
their own folder under ``out_dir``. The settings are those of ``configs/train_sample.yaml``
(chosen so that training takes a few minutes on a 2-core CPU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geounet import sample_data
from geounet.classes import ClassMap

log = logging.getLogger(__name__)

DEMO_TRAIN = {
    "model": {"name": "unet", "options": {"depth": 3, "base_channels": 8, "batch_norm": True}},
    "loss": "ce+dice",
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0001},
    "epochs": 60,
    "batch_size": 8,
    "patience": 20,
    "seed": 0,
}
"""Training settings of the demo (the ``train`` section of ``configs/train_sample.yaml``)."""


@dataclass(frozen=True)
class DemoResult:
    """Paths and headline figures of a demo run."""

    chips: Path
    model: Path
    classes: Path
    polygons: Path
    metrics: dict[str, Any]


def run_demo(
    out_dir: str | Path, *, epochs: int | None = None, overwrite: bool = False
) -> DemoResult:
    """Run tile -> train -> predict -> vectorize -> evaluate on the bundled sample.

    Args:
        out_dir: Job folder; stages write ``chips/``, ``model/``, ``predict/``, ``metrics.json``.
        epochs: Override the number of training epochs (e.g. 2 for a smoke run).
        overwrite: Replace the outputs of an earlier run.

    Returns:
        Paths of the main outputs and the test-split metrics.
    """
    from geounet.config import TrainConfig
    from geounet.evaluate import evaluate_prediction, write_metrics
    from geounet.inference import PredictOptions, predict_scene
    from geounet.tiling import TilingOptions, tile_scene
    from geounet.training import fit
    from geounet.vectorize import vectorize_raster

    out = Path(out_dir)
    sample = sample_data.brandenburg_s2()
    class_map = ClassMap.from_yaml(sample.class_map)
    chips = out / "chips"
    log.info("demo 1/5: tiling the bundled Sentinel-2 sample into %s", chips)
    tile_scene(
        sample.band_paths, chips, labels=sample.labels, class_map=class_map,
        options=TilingOptions(chip_size=128, stride=128, split_block_chips=2), overwrite=overwrite,
    )  # fmt: skip
    log.info("demo 2/5: training a U-Net on the train split")
    train_cfg = TrainConfig(
        chips=chips, out=out / "model", **{**DEMO_TRAIN, **({"epochs": epochs} if epochs else {})}
    )
    trained = fit(**train_cfg.fit_kwargs(), overwrite=overwrite)
    log.info("demo 3/5: predicting the whole scene")
    predicted = predict_scene(
        trained.model_path, list(sample.band_paths), out / "predict",
        options=PredictOptions(chip_size=256, overlap=64, probabilities=True),
    )  # fmt: skip
    log.info("demo 4/5: polygonising the class map")
    polygons = vectorize_raster(
        predicted.classes, out / "predict" / "polygons.gpkg",
        probabilities_path=predicted.probabilities, min_area_m2=500,
    )  # fmt: skip
    log.info("demo 5/5: evaluating on the test split")
    reference = _split_reference(chips, "test", out / "predict" / "reference_test.tif")
    metrics = evaluate_prediction(predicted.classes, reference)
    write_metrics(metrics, out / "metrics.json")
    return DemoResult(chips, trained.model_path, predicted.classes, polygons, metrics)


def _split_reference(chips: Path, split: str, path: Path) -> Path:
    """A reference class raster on the scene grid holding the label chips of one split only.

    Evaluating a whole-scene prediction against every label would score the training pixels
    too; this keeps the held-out split's labels and marks everything else 255 (ignored).
    """
    import json

    import rasterio

    from geounet.tiling import read_index

    meta = json.loads((chips / "tiling.json").read_text())["scene"]
    height, width = meta["shape"]
    mask = np.full((height, width), 255, dtype=np.uint8)
    index = read_index(chips)
    for rec in index[index["split"] == split].itertuples():
        with rasterio.open(chips / rec.label) as src:
            data = src.read(1)
        rows = slice(rec.row_off, rec.row_off + rec.height)
        cols = slice(rec.col_off, rec.col_off + rec.width)
        mask[rows, cols] = np.where(data != 255, data, mask[rows, cols])
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8",
        "crs": rasterio.crs.CRS.from_wkt(meta["crs"]),
        "transform": rasterio.Affine(*meta["transform"]), "nodata": 255, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask, 1)
    return path
