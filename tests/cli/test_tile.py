from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import rasterio
from click.testing import CliRunner

from geounet.cli.main import cli
from geounet.sample_data import brandenburg_s2, make_synthetic_scene
from geounet.tiling import read_index


def test_help_lists_every_option_with_default():
    result = CliRunner().invoke(cli, ["tile", "--help"])
    assert result.exit_code == 0
    for flag in [
        "--labels",
        "--class-column",
        "--class-map",
        "--chip-size",
        "--stride",
        "--out",
        "--edge",
        "--max-nodata",
        "--split",
        "--workers",
        "--config",
        "--nodata",
        "--classes-from-labels",
        "--background",
        "--ignore-buffer",
        "--display-bands",
    ]:
        assert flag in result.output
    assert "[default: 256]" in result.output


def test_geounet_help_is_fast_and_light():
    code = "import sys; from geounet.cli.main import cli; assert 'torch' not in sys.modules and 'geopandas' not in sys.modules, sorted(m for m in sys.modules if m.split('.')[0] in ('torch','geopandas','torchgeo'))"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tile_the_bundled_sample_from_the_cli(tmp_path):
    s = brandenburg_s2()
    out = tmp_path / "chips"
    args = [
        "tile",
        *map(str, s.band_paths),
        "--labels",
        str(s.labels),
        "--class-column",
        "fclass",
        "--class-map",
        str(s.class_map),
        "--chip-size",
        "256",
        "--stride",
        "224",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote 28 chips" in result.output
    index = read_index(out)
    assert len(index) == 28 and index.crs.to_epsg() == 32633
    assert set(index.split) <= {"train", "val", "test", "buffer"}
    assert index.px_field.sum() > 0 and index.px_water.sum() > 0 and index.px_building.sum() > 0


def test_config_file_with_flag_override_and_typo(tmp_path):
    s = brandenburg_s2()
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"tile:\n  scene: [{s.band_paths[1]}, {s.band_paths[2]}]\n  out: chips\n  chip_size: 128\n"
    )
    result = CliRunner().invoke(cli, ["tile", "--config", str(cfg), "--stride", "64"])
    assert result.exit_code == 0, result.output
    index = read_index(tmp_path / "chips")  # relative to the config file
    assert len(index) == 11 * 23  # (768-128)/64+1 rows x (1536-128)/64+1 cols
    cfg.write_text("tile:\n  scene: [a.tif]\n  out: x\n  chip_sise: 12\n")
    result = CliRunner().invoke(cli, ["tile", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "chip_sise" in result.output and "Extra inputs are not permitted" in result.output


def test_bad_input_is_a_clean_error_not_a_traceback(tmp_path):
    result = CliRunner().invoke(
        cli, ["tile", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_tile_many_scenes_on_a_local_cluster(tmp_path):
    (tmp_path / "scenes").mkdir()
    for name, shape in (("east", (64, 80)), ("west", (48, 96))):
        make_synthetic_scene(tmp_path / "scenes" / f"{name}.tif", shape=shape, count=3)
    out = tmp_path / "chips"
    args = ["tile", "--scenes", str(tmp_path / "scenes" / "*.tif"), "--chip-size", "32",
            "--out", str(out), "--dask-workers", "1"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "tiled 2 of 2 scenes" in result.output
    assert len(read_index(out / "east")) == 2 * 3 and len(read_index(out / "west")) == 2 * 3
    summary = json.loads((out / "run.json").read_text())
    assert [s["status"] for s in summary["scenes"]] == ["ok", "ok"]
    assert summary["scenes"][0]["outputs"]["index"] == str(out / "east" / "index.gpkg")
    result = CliRunner().invoke(cli, args)  # the chips folders exist now: refused up front
    assert result.exit_code == 1 and "not empty" in result.output and "east" in result.output


def test_nodata_flag_and_yaml_override_the_files_nodata(tmp_path):
    scene = make_synthetic_scene(tmp_path / "s2.tif", shape=(64, 64), count=3, fill="random")
    with rasterio.open(scene, "r+") as ds:  # Sentinel-2 style: 0 is nodata, undeclared
        data = np.maximum(ds.read(), 10)  # no random value is nodata
        data[:, :, :16] = 0
        ds.write(data)
    run = CliRunner().invoke(cli, ["tile", str(scene), "--out", str(tmp_path / "a"),
                                   "--chip-size", "32", "--nodata", "0"])  # fmt: skip
    assert run.exit_code == 0, run.output
    tiling = json.loads((tmp_path / "a" / "tiling.json").read_text())
    assert tiling["options"]["nodata"] == 0 and tiling["scene"]["nodatavals"] == [0, 0, 0]
    fractions = sorted(read_index(tmp_path / "a").nodata_fraction)
    assert fractions == [0.0, 0.0, 0.5, 0.5]
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        f"tile:\n  scene: [{scene}]\n  out: b\n  chip_size: 32\n  nodata: [0, null, 7]\n"
    )
    run = CliRunner().invoke(cli, ["tile", "--config", str(cfg)])
    assert run.exit_code == 0, run.output
    tiling = json.loads((tmp_path / "b" / "tiling.json").read_text())
    assert tiling["options"]["nodata"] == [0, None, 7]
    assert tiling["scene"]["nodatavals"] == [0, None, 7]
    run = CliRunner().invoke(cli, ["tile", str(scene), "--out", str(tmp_path / "c"),
                                   "--nodata", "zero"])  # fmt: skip
    assert run.exit_code == 2 and "--nodata" in run.output and "'zero'" in run.output


def test_label_flags_reach_the_tiling(tmp_path):
    # Built-up areas of the bundled sample as footprints, background labelled, a ring ignored,
    # and Sentinel-2 bands drawn by explicit names.
    s = brandenburg_s2()
    out = tmp_path / "chips"
    args = ["tile", *map(str, s.bands(["B02", "B03", "B04"])), "--labels", str(s.labels),
            "--class-map", str(s.class_map.with_name("osm_built_up.yaml")),
            "--background", "unlabelled", "--ignore-buffer", "10", "--chip-size", "256",
            "--display-bands", "B04,B03,2", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    tiling = json.loads((out / "tiling.json").read_text())
    assert tiling["options"]["labels"]["background"] == "unlabelled"
    assert tiling["display_bands"] == ["B04", "B03", "B03"]
    assert tiling["class_pixels"]["other"] > 0 and tiling["class_pixels"]["building"] > 0
    index = read_index(out)
    assert index["px_ignore"].sum() > 0


def test_classes_from_labels_with_a_class_map_is_a_clear_error(tmp_path):
    scene = make_synthetic_scene(tmp_path / "s.tif", shape=(32, 32), count=3)
    args = ["tile", str(scene), "--labels", str(scene), "--class-map",
            str(brandenburg_s2().class_map), "--classes-from-labels", "--chip-size", "32",
            "--out", str(tmp_path / "c")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "drop one" in result.output


def test_bands_flag_selects_bands_from_a_larger_stack(tmp_path):
    scene = make_synthetic_scene(tmp_path / "s2.tif", shape=(64, 64), count=5, fill="random")
    with rasterio.open(scene, "r+") as ds:
        ds.descriptions = ("B01", "B02", "B03", "B04", "B08")
        stack = ds.read()
    run = CliRunner().invoke(cli, ["tile", str(scene), "--out", str(tmp_path / "a"),
                                   "--chip-size", "32", "--bands", "B08,B02,B03"])  # fmt: skip
    assert run.exit_code == 0, run.output
    by_index = CliRunner().invoke(cli, ["tile", str(scene), "--out", str(tmp_path / "b"),
                                        "--chip-size", "32", "--bands", "5,2,3"])  # fmt: skip
    assert by_index.exit_code == 0, by_index.output
    for out in ("a", "b"):
        stats = json.loads((tmp_path / out / "stats.json").read_text())
        assert stats["bands"] == ["B08", "B02", "B03"]
        index = read_index(tmp_path / out)
        first = index[(index.row_off == 0) & (index.col_off == 0)].image.iloc[0]
        with rasterio.open(tmp_path / out / first) as src:
            assert src.descriptions == ("B08", "B02", "B03")
            np.testing.assert_array_equal(src.read(), stack[[4, 1, 2], :32, :32])
    missing = CliRunner().invoke(cli, ["tile", str(scene), "--out", str(tmp_path / "c"),
                                       "--chip-size", "32", "--bands", "B02,B8A,B12"])  # fmt: skip
    assert missing.exit_code != 0
    assert "s2.tif has no band ['B8A', 'B12']" in missing.output
    assert "['B01', 'B02', 'B03', 'B04', 'B08']" in missing.output
    assert not (tmp_path / "c").exists()
