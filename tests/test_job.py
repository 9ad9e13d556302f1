"""Jobs: every stage in its folder, re-runs skip what is up to date, failures name the stage."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import rasterio
import yaml
from _chips import make_scene_and_labels
from click.testing import CliRunner

from geounet.cli.main import cli
from geounet.config import STAGES, load_job_config
from geounet.errors import ConfigError, StageError
from geounet.job import run_job
from geounet.sample_data import class_map_path, make_synthetic_scene


def write_job(tmp_path, **sections):
    """A tiny job on the 96 x 96 learnable scene: 32 px chips, a 2-level U-Net, one epoch."""
    make_scene_and_labels(tmp_path)
    job = {
        "name": "tiny",
        "out": str(tmp_path / "job"),
        "tile": {"scene": "scene.tif", "labels": "labels.gpkg", "class_map": str(class_map_path()),
                 "chip_size": 32, "split_block_chips": 1, "split_fractions": [0.6, 0.2, 0.2],
                 "workers": 1},
        "train": {"model": {"name": "unet", "options": {"depth": 2, "base_channels": 4}},
                  "epochs": 1, "batch_size": 4, "progress_bar": False, "val_samples": 2,
                  "threads": 1},
        "predict": {"chip_size": 32, "overlap": 8, "device": "cpu"},
        "report": {"datetime": "2017-02-16T10:21:01Z"},
    }  # fmt: skip
    for key, value in sections.items():
        job[key] = {**job.get(key, {}), **value}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def statuses(result):
    return {s.name: s.status for s in result.stages}


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("job")
    path = write_job(tmp)
    return path, run_job(load_job_config(path))


def test_every_stage_writes_its_folder_and_a_record(finished_job):
    path, result = finished_job
    assert [s.name for s in result.stages] == list(STAGES)
    assert set(statuses(result).values()) == {"ran"}
    out = result.out_dir
    for stage in STAGES:
        record = json.loads((out / stage / "stage.json").read_text())
        assert len(record["fingerprint"]) == 64
        for rel in record["outputs"].values():
            assert (out / rel).exists(), rel
    with (
        rasterio.open(result.output("predict", "classes")) as c,
        rasterio.open(path.parent / "scene.tif") as s,
    ):
        assert c.crs == s.crs and c.transform == s.transform and c.shape == s.shape
    assert result.output("train", "model").name == "model.safetensors"
    assert result.output("vectorize", "polygons").parent == out / "vectorize"
    # The test split alone is scored: its reference raster ignores every other pixel.
    assert result.metrics["scored"] == "test split"
    with rasterio.open(out / "evaluate" / "reference_test.tif") as ref:
        assert ref.nodata == 255 and ref.transform == s.transform


def test_resolved_job_file_reproduces_the_job_and_a_rerun_skips_every_stage(finished_job):
    path, first = finished_job
    resolved = first.out_dir / "job.yaml"
    again = load_job_config(resolved)
    assert again == load_job_config(path)
    second = run_job(again)
    assert set(statuses(second).values()) == {"skipped"}
    assert second.metrics == first.metrics
    assert second.output("predict", "classes") == first.output("predict", "classes")


def test_a_changed_setting_reruns_its_stage_and_the_later_ones(tmp_path):
    path = write_job(tmp_path)
    run_job(load_job_config(path))
    changed = run_job(load_job_config(path, overrides={"predict.blend": "crop"}))
    assert statuses(changed) == {
        "tile": "skipped",
        "train": "skipped",
        "predict": "ran",
        "vectorize": "ran",
        "evaluate": "ran",
        "report": "ran",
    }
    # Speed-only settings do not invalidate a stage.
    faster = run_job(
        load_job_config(path, overrides={"predict.blend": "crop", "predict.readers": 4})
    )
    assert set(statuses(faster).values()) == {"skipped"}
    # A touched input file reruns everything after it; --force reruns all.
    scene = tmp_path / "scene.tif"
    os.utime(scene, ns=(scene.stat().st_atime_ns, scene.stat().st_mtime_ns + 10**9))
    touched = run_job(load_job_config(path, overrides={"predict.blend": "crop"}))
    assert set(statuses(touched).values()) == {"ran"}
    forced = run_job(load_job_config(path, overrides={"predict.blend": "crop"}), force=True)
    assert set(statuses(forced).values()) == {"ran"}


def test_a_failed_stage_is_named_and_earlier_outputs_are_kept(tmp_path):
    path = write_job(tmp_path, predict={"scene": "later.tif"})
    shutil.copy(tmp_path / "scene.tif", tmp_path / "later.tif")

    def break_predict_scene(run):
        # The job's checks passed before tile; the scene changes to three bands while it runs.
        if run.name == "train":
            make_synthetic_scene(tmp_path / "later.tif", shape=(96, 96), count=3)

    with pytest.raises(StageError, match="stage 'predict' failed") as err:
        run_job(load_job_config(path), on_stage=break_predict_scene)
    assert err.value.stage == "predict"
    assert "Finished stages kept: tile, train" in str(err.value)
    out = tmp_path / "job"
    assert (out / "tile" / "stage.json").exists() and (out / "train" / "stage.json").exists()
    assert (out / "train" / "model.safetensors").exists()
    assert not (out / "predict" / "stage.json").exists()
    # Fixed, the job resumes at the failed stage.
    fixed = run_job(load_job_config(path, overrides={"predict.scene": None}))
    assert statuses(fixed)["tile"] == statuses(fixed)["train"] == "skipped"
    assert statuses(fixed)["predict"] == "ran"


def test_job_file_errors_name_the_field_and_the_file(tmp_path):
    path = write_job(tmp_path)
    with pytest.raises(ConfigError, match=r"tain"):
        load_job_config(path, overrides={"tain.epochs": 2})
    with pytest.raises(ConfigError, match=r"train.epochs"):
        load_job_config(path, overrides={"train.epochs": 0})
    with pytest.raises(ConfigError, match=r"remove `tile.out`"):
        load_job_config(path, overrides={"tile.out": "elsewhere"})
    data = yaml.safe_load(path.read_text())
    del data["out"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"no `out:`.*--out"):
        load_job_config(path)
    job = load_job_config(path, out=tmp_path / "given")
    assert job.out == tmp_path / "given" and job.train.chips == tmp_path / "given" / "tile"
    # Relative paths: the file's folder for inputs, geounet: inside the package.
    assert job.tile.scene == [str(tmp_path / "scene.tif")]  # strings, as GDAL opens them


def test_package_paths_resolve_inside_the_installed_package(tmp_path):
    from geounet.sample_data import brandenburg_s2, demo_job_path

    job = load_job_config(demo_job_path(), out=tmp_path / "demo")
    assert tuple(map(Path, job.tile.scene)) == brandenburg_s2().band_paths
    assert job.tile.labels == brandenburg_s2().labels
    assert all(Path(p).exists() for p in job.tile.scene)


def test_cli_run_reports_each_stage_and_skips_on_rerun(tmp_path):
    path = write_job(tmp_path)
    runner = CliRunner()
    first = runner.invoke(cli, ["run", str(path), "--set", "train.epochs=1"])
    assert first.exit_code == 0, first.output
    assert "train" in first.output and "done in" in first.output and "mIoU" in first.output
    second = runner.invoke(cli, ["run", str(path), "--set", "train.epochs=1"])
    assert second.exit_code == 0, second.output
    assert second.output.count("skipped (up to date)") == len(STAGES)
    bad = runner.invoke(cli, ["run", str(path), "--set", "train.epochs"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
