"""The example job files in configs/: all valid, and the raster-label job runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from geounet.classes import ClassScheme
from geounet.config import TileConfig, TrainConfig, load_job_config, load_section
from geounet.errors import LabelWarning
from geounet.job import run_job
from geounet.sample_data import (
    SAMPLE_LANDCOVER,
    make_synthetic_labels,
    make_synthetic_scene,
    write_sample_landcover,
)
from geounet.tiling import read_index

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
JOBS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "train_sample.yaml")
GENERATE_LANDCOVER = (
    "python -m geounet.sample_data landcover configs/data/brandenburg_landcover.tif"
)
TINY_TRAINING = {
    "train.model.options": {"depth": 2, "base_channels": 4}, "train.epochs": 1,
    "train.batch_size": 4, "train.progress_bar": False, "train.val_samples": 0,
    "predict.device": "cpu",
}  # fmt: skip


def test_there_are_example_jobs():
    assert {p.name for p in JOBS} >= {
        "demo.yaml",
        "s2_4band_10m.yaml",
        "raster_labels.yaml",
        "gpu.yaml",
        "footprints.yaml",
        "class_raster.yaml",
    }


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_example_job_is_valid(path, tmp_path):
    job = load_job_config(path, out=tmp_path / "job")
    assert job.train.chips == tmp_path / "job" / "tile"
    text = path.read_text()
    if "geounet:sample" in text:  # jobs on the bundled sample: files exist
        assert all(Path(p).exists() for p in job.tile.scene)
        # class_raster.yaml's labels are written by the command its header gives.
        assert job.tile.labels.exists() or GENERATE_LANDCOVER in text


def test_the_per_stage_example_is_valid():
    path = CONFIGS / "train_sample.yaml"
    assert load_section(path, "tile", {}, TileConfig).chip_size == 128
    assert load_section(path, "train", {}, TrainConfig).epochs == 60


def test_the_raster_label_job_maps_worldcover_codes(tmp_path):
    # A 4-band scene and a WorldCover-like code raster at 20 m on the same ground.
    transform = Affine(10.0, 0, 330000.0, 0, -10.0, 5822040.0)
    scene = make_synthetic_scene(
        tmp_path / "scene.tif", shape=(64, 64), count=4, transform=transform, fill="random"
    )
    codes = np.full((32, 32), 10, np.uint8)  # tree cover -> other
    codes[:16, :16], codes[16:, 16:], codes[:8, 24:] = 40, 80, 50
    codes[-4:, :4] = 0  # no data -> ignored
    labels = tmp_path / "worldcover.tif"
    with rasterio.open(
        labels,
        "w",
        driver="GTiff",
        width=32,
        height=32,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=transform * Affine.scale(2),
        nodata=0,
    ) as dst:
        dst.write(codes, 1)
    job = load_job_config(CONFIGS / "raster_labels.yaml", out=tmp_path / "job", overrides={
        "tile.scene": [str(scene)], "tile.labels": str(labels), "tile.chip_size": 32,
        "tile.split_block_chips": 1, "tile.split_fractions": [0.5, 0.25, 0.25],
        "train.model.options": {"depth": 2, "base_channels": 4}, "train.epochs": 1,
        "train.batch_size": 2, "train.progress_bar": False, "train.val_samples": 0,
        "predict.chip_size": 32, "predict.overlap": 8, "predict.device": "cpu",
        "vectorize.min_area_m2": 0,
    })  # fmt: skip
    result = run_job(job)
    labels_dir = tmp_path / "job" / "tile" / "labels"

    def label_chip(row, col):
        (path,) = labels_dir.glob(f"*r{row:06d}_c{col:06d}.tif")
        with rasterio.open(path) as src:
            return src.read(1)

    # 20 m codes resampled to 10 m: cropland -> field, water -> water, built-up -> building,
    # tree cover -> other, no data -> ignored.
    assert (label_chip(0, 0) == 1).all() and (label_chip(32, 32) == 2).all()
    assert label_chip(0, 32)[0, 31] == 3 and label_chip(0, 32)[31, 0] == 0
    assert label_chip(32, 0)[31, 0] == 255 and label_chip(32, 0)[0, 0] == 0
    assert result.metrics["classes"] == ["other", "field", "water", "building"]


def test_the_footprint_job_labels_background_and_a_poor_model_scores_below_one(tmp_path):
    # A 64 x 64 scene with one built-up polygon in each 32 px chip (so every split has both
    # classes) and a 1-epoch, 4-channel U-Net: a deliberately poor model.
    scene = make_synthetic_scene(tmp_path / "scene.tif", shape=(64, 64), count=4, fill="random")
    x0, y0 = 330000.0, 5822040.0
    polygons = [
        (box(x0 + c + 45, y0 - r - 175, x0 + c + 205, y0 - r - 55), "residential")
        for r in (0, 320)
        for c in (0, 320)
    ]
    labels = make_synthetic_labels(tmp_path / "osm.gpkg", polygons, crs="EPSG:32633")
    job = load_job_config(CONFIGS / "footprints.yaml", out=tmp_path / "job", overrides={
        **TINY_TRAINING, "tile.scene": [str(scene)], "tile.labels": str(labels),
        "tile.chip_size": 32, "tile.split_block_chips": 1,
        "tile.split_fractions": [0.5, 0.25, 0.25], "predict.chip_size": 32,
        "predict.overlap": 8, "vectorize.min_area_m2": 0, "evaluate.min_area_m2": 0,
    })  # fmt: skip
    result = run_job(job)
    index = read_index(tmp_path / "job" / "tile")
    # Background is labelled, the 10 m ring is ignored, the polygons are building.
    assert (index["px_other"] > 0).all() and (index["px_building"] > 0).all()
    assert (index["px_ignore"] > 0).all()
    assert result.metrics["classes"] == ["other", "building"]
    assert result.metrics["per_class"]["other"]["support"] > 0
    assert result.metrics["mean"]["iou"] < 1.0 and result.metrics["warnings"] == []

    # The same footprints read the old way (outside them ignored): tiling warns, and the
    # training summary and the evaluation flag their scores as meaningless.
    job = job.model_copy(update={
        "out": tmp_path / "ignored",
        # workers 1: see test_labels.test_footprints_alone_warn_and_flag_the_score_a_poor_...
        "tile": job.tile.model_copy(update={"background": "ignore", "ignore_buffer_m": 0.0,
                                            "out": tmp_path / "ignored" / "tile", "workers": 1}),
        "train": job.train.model_copy(update={"chips": tmp_path / "ignored" / "tile",
                                              "out": tmp_path / "ignored" / "train"}),
    })  # fmt: skip
    with pytest.warns(LabelWarning, match="only class 'building' is labelled in the chips"):
        flagged = run_job(job)
    summary = json.loads((tmp_path / "ignored" / "train" / "metrics.json").read_text())
    assert "meaningless" in summary["warnings"][0]
    assert flagged.metrics["absent_classes"] == ["other"]
    assert "no negatives" in flagged.metrics["warnings"][0]


def test_the_class_raster_job_takes_the_rasters_classes(tmp_path, caplog):
    labels = write_sample_landcover(tmp_path / "data" / "brandenburg_landcover.tif")
    assert (tmp_path / "data" / "brandenburg_landcover.tif.aux.xml").is_file()
    job = load_job_config(CONFIGS / "class_raster.yaml", out=tmp_path / "job", overrides={
        **TINY_TRAINING, "tile.labels": str(labels), "tile.chip_size": 256,
        "predict.chip_size": 256, "predict.overlap": 32,
    })  # fmt: skip
    result = run_job(job)
    names = [name for name, _, _ in SAMPLE_LANDCOVER]
    scheme = ClassScheme.read_json(tmp_path / "job" / "tile" / "classes.json")
    assert scheme.names == names and result.metrics["classes"] == names
    assert scheme.classes[5].color == (0, 80, 220)  # water, from the colour table
    assert any("its 7 classes are taken from its category names" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_the_job_file_reference_is_current():
    from geounet._config_doc import render_config_reference

    committed = (CONFIGS.parent / "docs" / "config.md").read_text()
    assert committed == render_config_reference(), (
        "docs/config.md is stale: python -m geounet._config_doc > docs/config.md"
    )
