"""Jobs of several scenes: the tile.scenes / tile.split config, per-scene stages, pooled scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import box

from geounet.cli.main import cli
from geounet.config import TileConfig, load_job_config, load_section
from geounet.errors import ConfigError, JobCheckError
from geounet.job import run_job
from geounet.sample_data import make_synthetic_labels, make_synthetic_scene, write_sample_halves
from geounet.tiling import read_index

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
X0, Y0 = 330000.0, 5822040.0
TINY = {
    "train.model.options": {"depth": 2, "base_channels": 4}, "train.epochs": 1,
    "train.batch_size": 4, "train.progress_bar": False, "train.val_samples": 0,
    "predict.chip_size": 32, "predict.overlap": 8, "predict.device": "cpu",
    "vectorize.min_area_m2": 0, "evaluate.min_area_m2": 0,
}  # fmt: skip


def _write_scene(folder: Path, name: str, col_off_px: int, count: int = 4) -> tuple[Path, Path]:
    """A 64 x 96 random scene and its labels: field, water and forest stripes (north to south)."""
    transform = Affine(10.0, 0, X0 + 10.0 * col_off_px, 0, -10.0, Y0)
    img = make_synthetic_scene(folder / f"{name}.tif", shape=(64, 96), count=count,
                               transform=transform, fill="random")  # fmt: skip
    left, right = X0 + 10.0 * col_off_px, X0 + 10.0 * (col_off_px + 96)
    stripes = [(box(left, Y0 - 10.0 * (r + 16), right, Y0 - 10.0 * r), v)
               for r, v in ((0, "farm"), (16, "water"), (32, "forest"), (48, "farm"))]  # fmt: skip
    return img, make_synthetic_labels(folder / f"{name}.gpkg", stripes, crs="EPSG:32633")


def _job_file(tmp_path: Path, tile: dict) -> Path:
    job = {
        "name": "two",
        "out": "job",
        "tile": {"class_map": "geounet:class_maps/osm_fclass.yaml", "chip_size": 32,
                 "split_block_chips": 1, "split_fractions": [0.5, 0.25, 0.25], **tile},
        "train": {"model": {"name": "unet"}},
    }  # fmt: skip
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.fixture
def scenes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    return {"west": _write_scene(data, "west", 0), "east": _write_scene(data, "east", 96)}


SCENES = [
    {"name": "west", "scene": "data/west.tif", "labels": "data/west.gpkg"},
    {"name": "east", "scene": "data/east.tif", "labels": "data/east.gpkg"},
]


def test_scene_paths_are_relative_to_the_job_file_and_labels_default_to_tile_labels(tmp_path):
    path = _job_file(tmp_path, {"scenes": [{"name": "a", "scene": "data/a.tif"},
                                           {"name": "b", "scene": ["data/b1.tif", "data/b2.tif"],
                                            "labels": "data/b.gpkg"}],
                                "labels": "data/all.gpkg"})  # fmt: skip
    job = load_job_config(path, out=tmp_path / "job")
    assert job.tile.scene is None and job.tile.scene_names() == ["a", "b"]
    assert job.tile.scenes[1].scene == [
        str(tmp_path / "data/b1.tif"),
        str(tmp_path / "data/b2.tif"),
    ]
    assert job.tile.scene_labels() == {
        "a": tmp_path / "data/all.gpkg",
        "b": tmp_path / "data/b.gpkg",
    }
    kwargs = job.tile.scene_set_kwargs()
    assert [s.split for s in kwargs["scenes"]] == [None, None]  # by block: within each scene
    assert kwargs["options"].split_fractions == (0.5, 0.25, 0.25)


def test_scenes_given_by_set_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    path = _job_file(tmp_path, {"scene": ["data/a.tif"]})
    monkeypatch.chdir(tmp_path / "..")
    job = load_job_config(path, out=tmp_path / "job", overrides={
        "tile.scene": None, "tile.scenes": [{"name": "x", "scene": "x.tif", "labels": "x.gpkg"}],
    })  # fmt: skip
    assert job.tile.scenes[0].scene == [str(tmp_path.parent / "x.tif")]
    assert job.tile.scenes[0].labels == tmp_path.parent / "x.gpkg"


def test_a_whole_scene_split_holds_the_named_scenes_out(tmp_path):
    three = [{"name": n, "scene": f"{n}.tif"} for n in ("a", "b", "c")]
    path = _job_file(tmp_path, {"scenes": three, "split": {"by": "scene", "test": ["c"]}})
    kwargs = load_job_config(path, out=tmp_path / "job").tile.scene_set_kwargs()
    # No val scene named: val comes from spatial blocks of the training scenes.
    assert [s.split for s in kwargs["scenes"]] == [None, None, "test"]
    assert kwargs["options"].split_fractions == (0.75, 0.25, 0.0)
    split = {"by": "scene", "test": ["c"], "val": ["b"]}
    kwargs = load_job_config(_job_file(tmp_path, {"scenes": three, "split": split}),
                             out=tmp_path / "job").tile.scene_set_kwargs()  # fmt: skip
    assert [s.split for s in kwargs["scenes"]] == ["train", "val", "test"]


@pytest.mark.parametrize(
    ("tile", "match"),
    [
        ({"scene": ["a.tif"], "scenes": [{"name": "a", "scene": "a.tif"}]}, "exactly one of `scene`"),
        ({}, "exactly one of `scene`"),
        ({"scenes": [{"name": "a", "scene": "a.tif"}, {"name": "a", "scene": "b.tif"}]},
         "distinct names"),
        ({"scenes": [{"name": "a/b", "scene": "a.tif"}]}, "pattern"),
        ({"scenes": SCENES, "split": {"by": "scene"}}, "needs the test scenes"),
        ({"scenes": SCENES, "split": {"by": "scene", "test": ["north"]}}, "unknown scenes"),
        ({"scenes": SCENES, "split": {"by": "scene", "test": ["west"], "val": ["east"]}},
         "every scene"),
        ({"scenes": SCENES, "split": {"test": ["west"]}}, "set `by: scene`"),
        ({"scene": ["a.tif"], "split": {"by": "scene", "test": ["a"]}}, "give `scenes`"),
        ({"scenes": [{"name": "a", "scene": "a.tif", "label": "a.gpkg"}]}, "label"),
    ],
)  # fmt: skip
def test_bad_scene_settings_name_the_key(tmp_path, tile, match):
    with pytest.raises(ConfigError, match=match):
        load_job_config(_job_file(tmp_path, tile), out=tmp_path / "job")


def test_the_job_checks_every_scene_before_any_stage(tmp_path, scenes):
    _write_scene(tmp_path / "data", "east", 96, count=3)  # east loses a band
    (tmp_path / "data" / "west.gpkg").unlink()
    job = load_job_config(_job_file(tmp_path, {"scenes": SCENES}), out=tmp_path / "job",
                          overrides=TINY)  # fmt: skip
    with pytest.raises(JobCheckError) as info:
        run_job(job)
    text = str(info.value)
    assert "tile.scenes[east].scene:" in text and "tile.scenes[west].labels:" in text
    assert not (tmp_path / "job").exists()


def test_another_predict_scene_needs_its_own_reference(tmp_path, scenes):
    job = load_job_config(_job_file(tmp_path, {"scenes": SCENES}), out=tmp_path / "job",
                          overrides={**TINY, "predict.scene": [str(scenes["east"][0])]})  # fmt: skip
    with pytest.raises(JobCheckError, match="also give evaluate.reference"):
        run_job(job)


def test_a_two_scene_job_runs_per_scene_and_pools_the_scores(tmp_path, scenes):
    job = load_job_config(_job_file(tmp_path, {"scenes": SCENES}), out=tmp_path / "job",
                          overrides=TINY)  # fmt: skip
    result = run_job(job)
    out = tmp_path / "job"
    index = read_index(out / "tile")
    assert sorted(set(index["scene"])) == ["east", "west"] and len(index) == 12
    for name in ("west", "east"):
        with rasterio.open(out / "predict" / name / "classes.tif") as dst:
            with rasterio.open(scenes[name][0]) as src:
                assert dst.transform == src.transform and dst.crs == src.crs
        assert (out / "vectorize" / name / "polygons.gpkg").is_file()
        assert (out / "report" / name / "report.html").is_file()
        assert (out / f"item_{name}.json").is_file()
        assert result.output("predict", f"{name}/classes") == out / "predict" / name / "classes.tif"
    per_scene = {n: json.loads((out / "evaluate" / n / "metrics.json").read_text())
                 for n in ("west", "east")}  # fmt: skip
    pooled = result.metrics
    assert pooled == json.loads((out / "evaluate" / "metrics.json").read_text())
    matrices = [np.array(m["confusion_matrix"]["matrix"]) for m in per_scene.values()]
    np.testing.assert_array_equal(pooled["confusion_matrix"]["matrix"], sum(matrices))
    assert pooled["pixels_evaluated"] == sum(m["pixels_evaluated"] for m in per_scene.values())
    assert set(pooled["scenes"]) == {"west", "east"}
    # One page lists every scene's scores and links its report.
    page = (out / "report" / "index.html").read_text()
    assert result.output("report", "report") == out / "report" / "index.html"
    for name, m in per_scene.items():
        assert f'<a href="{name}/report.html">' in page and f"{m['mean']['iou']:.3f}" in page
    assert f"{pooled['mean']['iou']:.3f}" in (out / "report" / "index.md").read_text()
    # Each scene is scored on its own test chips only.
    for name, m in per_scene.items():
        tested = index[(index["scene"] == name) & (index["split"] == "test")]
        labelled = tested[["px_other", "px_field", "px_water", "px_building"]].to_numpy().sum()
        assert m["pixels_evaluated"] == labelled


def test_geounet_tile_cuts_a_configs_scenes_into_one_folder(tmp_path, scenes):
    path = _job_file(tmp_path, {"scenes": SCENES, "split": {"by": "scene", "test": ["east"]}})
    out = tmp_path / "chips"
    res = CliRunner().invoke(cli, ["tile", "--config", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 12 chips" in res.output
    index = read_index(out)
    assert set(index.loc[index["scene"] == "east", "split"]) == {"test"}
    assert "test" not in set(index.loc[index["scene"] == "west", "split"])
    assert load_section(path, "tile", {"out": out}, TileConfig).scene_names() == ["west", "east"]


@pytest.mark.slow
def test_the_two_scene_example_holds_the_east_half_out(tmp_path, qgis_check):
    # configs/two_scenes.yaml as its header says: the sample cut into two scenes first.
    write_sample_halves(tmp_path / "data")
    shutil.copy(CONFIGS / "two_scenes.yaml", tmp_path / "two_scenes.yaml")
    job = load_job_config(tmp_path / "two_scenes.yaml", out=tmp_path / "job", overrides={
        "train.model.options": {"depth": 2, "base_channels": 4}, "train.epochs": 1,
        "train.progress_bar": False, "train.val_samples": 0, "predict.device": "cpu",
    })  # fmt: skip
    result = run_job(job)
    out = tmp_path / "job"
    index = read_index(out / "tile")
    assert set(index.loc[index["scene"] == "east", "split"]) == {"test"}
    assert set(index.loc[index["scene"] == "west", "split"]) == {"train", "val"}
    # The west scene has no test chips: predicted and reported, not scored.
    assert not (out / "evaluate" / "west").exists()
    assert (out / "predict" / "west" / "classes.tif").is_file()
    assert (out / "report" / "west" / "report.html").is_file()
    east = json.loads((out / "evaluate" / "east" / "metrics.json").read_text())
    assert result.metrics["confusion_matrix"] == east["confusion_matrix"]
    assert list(result.metrics["scenes"]) == ["east"]
    # Scored on the whole east scene: every labelled pixel of it.
    labelled = index.loc[index["scene"] == "east", ["px_other", "px_field", "px_water",
                                                     "px_building"]].to_numpy().sum()  # fmt: skip
    assert east["pixels_evaluated"] == labelled

    # QGIS opens each scene's outputs and the one index (with its `scene` column).
    check = qgis_check(
        out / "predict" / "west" / "classes.tif", out / "predict" / "east" / "classes.tif",
        out / "vectorize" / "east" / "polygons.gpkg", out / "tile" / "index.gpkg",
        "--require-cog", "--json",
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    # The resolved job.yaml (scenes and split included) reloads to the same job: all skipped.
    again = run_job(load_job_config(out / "job.yaml"))
    assert {s.status for s in again.stages} == {"skipped"}
