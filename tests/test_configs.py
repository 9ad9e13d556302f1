"""The example job files in configs/: all valid, and the raster-label job runs end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geounet.config import TileConfig, TrainConfig, load_job_config, load_section
from geounet.job import run_job
from geounet.sample_data import make_synthetic_scene

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
JOBS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "train_sample.yaml")


def test_there_are_example_jobs():
    assert {p.name for p in JOBS} >= {
        "demo.yaml",
        "s2_4band_10m.yaml",
        "raster_labels.yaml",
        "gpu.yaml",
    }


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_example_job_is_valid(path, tmp_path):
    job = load_job_config(path, out=tmp_path / "job")
    assert job.train.chips == tmp_path / "job" / "tile"
    if "geounet:sample" in path.read_text():  # jobs on the bundled sample: files exist
        assert all(p.exists() for p in job.tile.scene) and job.tile.labels.exists()


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


def test_the_job_file_reference_is_current():
    from geounet._config_doc import render_config_reference

    committed = (CONFIGS.parent / "docs" / "config.md").read_text()
    assert committed == render_config_reference(), (
        "docs/config.md is stale: python -m geounet._config_doc > docs/config.md"
    )
