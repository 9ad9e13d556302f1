"""Outputs load in the real QGIS (Debian's PyQGIS), exactly as "Add Layer" does."""

from __future__ import annotations

import json

from geounet.classes import ClassMap
from geounet.sample_data import brandenburg_s2
from geounet.tiling import TilingOptions, read_index, tile_scene


def test_chip_index_and_chips_open_in_qgis_with_crs(tmp_path, qgis_check):
    s = brandenburg_s2()
    out = tmp_path / "chips"
    tile_scene(s.band_paths, out, labels=s.labels, class_map=ClassMap.from_yaml(s.class_map),
               options=TilingOptions(chip_size=256, stride=256))
    first = read_index(out).iloc[0]
    png = tmp_path / "render.png"
    result = qgis_check(out / "index.gpkg", out / first.label, out / first.image, "--json", "--render", png)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    text = json.dumps(report)
    assert "EPSG:32633" in text
    assert png.stat().st_size > 1000
