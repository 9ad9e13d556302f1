"""`geounet info` describes a model file, a scene and a chips folder, as text or JSON."""

from __future__ import annotations

import json

from _chips import make_chips
from _models import BANDS, make_model_file
from click.testing import CliRunner

from geounet.cli.main import cli
from geounet.sample_data import make_synthetic_scene


def _run(*args):
    res = CliRunner().invoke(cli, ["info", *map(str, args)])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return res.stdout


def test_info_on_a_model_file_shows_band_order_classes_and_input(tmp_path):
    model, _ = make_model_file(tmp_path, chip_size=64)
    text = _run(model)
    assert f"bands:     {' '.join(BANDS)}" in text
    assert "classes:   0 other, 1 field, 2 water, 3 building" in text
    assert "chip size: 64 px, pixel 10 x 10" in text and "(DN - mean) / std" in text
    data = json.loads(_run(model, "--json"))
    assert data["kind"] == "model" and data["bands"] == list(BANDS) and data["chip_size"] == 64


def test_info_on_a_scene_and_a_chips_folder(tmp_path):
    scene = make_synthetic_scene(tmp_path / "s.tif", shape=(30, 40), count=3, crs="EPSG:32633")
    data = json.loads(_run(scene, "--json"))
    assert data["kind"] == "scene" and data["shape"] == [30, 40] and data["epsg"] == 32633
    assert "crs:       EPSG:32633" in _run(scene)
    chips = make_chips(tmp_path)
    data = json.loads(_run(chips, "--json"))
    assert data["kind"] == "chips" and set(data["splits"]) <= {"train", "val", "test", "buffer"}
    assert sum(data["splits"].values()) > 0
    assert "chips:     " in _run(chips)


def test_info_on_a_missing_file_says_so():
    res = CliRunner().invoke(cli, ["info", "nope.tif"])
    assert res.exit_code != 0 and "nope.tif does not exist" in res.output
