"""geounet predict and geounet vectorize from the command line, with a real model file."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import rasterio
from _models import BANDS, make_model_file
from click.testing import CliRunner

import geounet
from geounet.cli.main import cli
from geounet.sample_data import make_synthetic_scene


def _model_file(tmp_path):
    return make_model_file(tmp_path, chip_size=64)


def _scene(tmp_path, bands=BANDS):
    path = make_synthetic_scene(
        tmp_path / "scene.tif", shape=(90, 130), count=len(bands), fill="random"
    )
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = bands
    return path


def test_predict_then_vectorize_from_the_cli(tmp_path):
    model_path, _ = _model_file(tmp_path)
    scene = _scene(tmp_path)
    out = tmp_path / "pred"
    run = CliRunner().invoke(cli, ["predict", str(model_path), str(scene), "--out", str(out),
                                   "--overlap", "16", "--probabilities", "--device", "cpu"])  # fmt: skip
    assert run.exit_code == 0, run.output
    with rasterio.open(out / "classes.tif") as c, rasterio.open(scene) as s:
        assert c.crs == s.crs and c.transform == s.transform
        assert c.tags()["GEOUNET_CLASSES"]
    run = CliRunner().invoke(
        cli, ["vectorize", str(out / "classes.tif"), "--out", str(out / "p.gpkg")]
    )
    assert run.exit_code == 0, run.output
    polygons = gpd.read_file(out / "p.gpkg", layer="polygons")
    assert {"class_id", "class_name", "area_m2", "mean_prob"} <= set(polygons.columns)
    assert polygons.area_m2.sum() == 90 * 130 * 100  # every pixel in exactly one polygon


def test_cli_and_function_agree(tmp_path):
    model_path, _ = _model_file(tmp_path)
    scene = _scene(tmp_path)
    CliRunner().invoke(
        cli,
        ["predict", str(model_path), str(scene), "--out", str(tmp_path / "a"), "--blend", "crop"],
    )
    geounet.predict_scene(model_path, scene, tmp_path / "b", blend="crop")
    with (
        rasterio.open(tmp_path / "a" / "classes.tif") as a,
        rasterio.open(tmp_path / "b" / "classes.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())


def test_band_mismatch_is_a_clean_error_before_compute(tmp_path):
    model_path, _ = _model_file(tmp_path)
    # B8A for B08 (bands merely in another order are read in the model's order).
    scene = _scene(tmp_path, bands=("B02", "B03", "B8A", "B04"))
    out = tmp_path / "pred"
    run = CliRunner().invoke(cli, ["predict", str(model_path), str(scene), "--out", str(out)])
    assert run.exit_code == 1 and "Traceback" not in run.output
    assert "B08" in run.output and "order" in run.output
    assert not (out / "classes.tif").exists()


def test_many_scenes_on_a_local_cluster_report_a_failed_one(tmp_path):
    model_path, _ = _model_file(tmp_path)
    scene = _scene(tmp_path)
    (tmp_path / "bands").mkdir()
    band_files = []
    with rasterio.open(scene) as src:
        for i, band in enumerate(BANDS, start=1):
            band_files.append(f"bands/T33_{band}.tif")
            with rasterio.open(tmp_path / band_files[-1], "w", **{**src.profile, "count": 1}) as d:
                d.write(src.read(i), 1)
    blocked = make_synthetic_scene(tmp_path / "blocked.tif", shape=(40, 50), count=4)
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"scene.tif\n# band files of one scene:\n{' '.join(band_files)}\n")
    out = tmp_path / "pred"
    out.mkdir()
    (out / "blocked").write_text("a file where the scene's folder should go")
    args = ["predict", str(model_path), "--scenes", str(listing), "--scenes", str(blocked),
            "--out", str(out), "--workers", "1", "--retries", "0", "--device", "cpu"]  # fmt: skip
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 1, run.output
    assert "predicted 2 of 3 scenes" in run.output
    assert "1 of 3 scenes failed" in run.output and "blocked" in run.output
    assert "OutputError" in run.output and "Traceback" not in run.output
    geounet.predict_scene(model_path, scene, tmp_path / "single")
    with rasterio.open(tmp_path / "single" / "classes.tif") as want:
        for name in ("scene", "T33"):
            with rasterio.open(out / name / "classes.tif") as got:
                assert got.crs == want.crs and got.transform == want.transform
                np.testing.assert_array_equal(got.read(), want.read())
    summary = json.loads((out / "run.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["scenes"]] == [
        ("scene", "ok"), ("T33", "ok"), ("blocked", "failed"),
    ]  # fmt: skip


def test_scene_and_scenes_together_are_a_usage_error(tmp_path):
    model_path, _ = _model_file(tmp_path)
    scene = _scene(tmp_path)
    base = ["predict", str(model_path), "--out", str(tmp_path / "o")]
    run = CliRunner().invoke(cli, [*base, str(scene), "--scenes", str(scene)])
    assert run.exit_code == 2 and "quote it" in run.output
    run = CliRunner().invoke(cli, [*base, str(scene), "--workers", "2"])
    assert run.exit_code == 2 and "need --scenes" in run.output
    run = CliRunner().invoke(cli, base)
    assert run.exit_code == 2 and "--scenes" in run.output
    run = CliRunner().invoke(cli, [*base, "--scenes", str(tmp_path / "none-*.tif")])
    assert run.exit_code == 1 and "matches no file" in run.output


def test_nodata_flag_marks_undeclared_nodata_as_255(tmp_path):
    model_path, _ = _model_file(tmp_path)
    scene = _scene(tmp_path)
    with rasterio.open(scene, "r+") as ds:
        data = np.maximum(ds.read(), 10)  # no random value is nodata
        data[:, 10:20, :] = 0
        data[2, 50:60, 30:40] = 9  # a nodata value of one band only
        ds.write(data)
    out = tmp_path / "pred"
    run = CliRunner().invoke(cli, ["predict", str(model_path), str(scene), "--out", str(out),
                                   "--device", "cpu", "--nodata", "0,0,9,0"])  # fmt: skip
    assert run.exit_code == 0, run.output
    expected = np.zeros((90, 130), dtype=bool)
    expected[10:20, :] = True
    expected[50:60, 30:40] = True
    with rasterio.open(out / "classes.tif") as c:
        np.testing.assert_array_equal(c.read(1) == 255, expected)


def test_bands_flag_selects_the_model_s_bands_from_a_larger_stack(tmp_path):
    model_path, _ = _model_file(tmp_path)
    scene = _scene(tmp_path)
    wide = make_synthetic_scene(tmp_path / "wide.tif", shape=(90, 130), count=len(BANDS) + 2)
    with rasterio.open(scene) as src, rasterio.open(wide, "r+") as dst:
        stack = dst.read()
        stack[2:] = src.read()[::-1]  # the model's bands reversed, after two others
        dst.write(stack)
        dst.descriptions = ("X1", "X2", *BANDS[::-1])
    order = ",".join(str(len(BANDS) + 2 - i) for i in range(len(BANDS)))  # e.g. 6,5,4,3
    args = ["--device", "cpu", "--blend", "crop"]
    for out, extra in (("ref", [str(scene)]), ("idx", [str(wide), "--bands", order])):
        run = CliRunner().invoke(cli, ["predict", str(model_path), *extra, "--out",
                                       str(tmp_path / out), *args])  # fmt: skip
        assert run.exit_code == 0, run.output
    with (
        rasterio.open(tmp_path / "ref" / "classes.tif") as a,
        rasterio.open(tmp_path / "idx" / "classes.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))
    run = CliRunner().invoke(cli, ["predict", str(model_path), str(wide), "--out",
                                   str(tmp_path / "bad"), "--bands", "X1,B99", *args])  # fmt: skip
    assert run.exit_code != 0
    assert "wide.tif has no band ['B99']" in run.output and "'X2'" in run.output
    assert not (tmp_path / "bad").exists()
