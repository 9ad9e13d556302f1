"""Outputs load in the real QGIS (Debian's PyQGIS), exactly as "Add Layer" does."""

from __future__ import annotations

import json

from geounet.classes import ClassMap
from geounet.sample_data import brandenburg_s2
from geounet.tiling import TilingOptions, read_index, tile_scene


def test_chip_index_and_chips_open_in_qgis_with_crs(tmp_path, qgis_check):
    s = brandenburg_s2()
    out = tmp_path / "chips"
    tile_scene(
        s.band_paths,
        out,
        labels=s.labels,
        class_map=ClassMap.from_yaml(s.class_map),
        options=TilingOptions(chip_size=256, stride=256),
    )
    first = read_index(out).iloc[0]
    png = tmp_path / "render.png"
    result = qgis_check(
        out / "index.gpkg", out / first.label, out / first.image, "--json", "--render", png
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    text = json.dumps(report)
    assert "EPSG:32633" in text
    assert png.stat().st_size > 1000


def test_prediction_outputs_open_in_qgis_as_named_coloured_cog(tmp_path, qgis_check):
    import numpy as np
    import torch

    from geounet.classes import ClassScheme
    from geounet.inference import ModelSpec, PredictOptions, predict_scene
    from geounet.sample_data import SENTINEL2_BANDS

    torch.manual_seed(0)
    model = torch.nn.Conv2d(13, 4, 1)
    spec = ModelSpec(SENTINEL2_BANDS, np.full(13, 1500, np.float32), np.full(13, 500, np.float32),
                     ClassScheme.default(), 256)  # fmt: skip
    result = predict_scene(model, brandenburg_s2().band_paths, tmp_path / "pred", metadata=spec,
                           options=PredictOptions(probabilities=True))  # fmt: skip
    png = tmp_path / "render.png"
    run = qgis_check(
        result.classes, result.probabilities, "--require-cog", "--json", "--render", png
    )
    assert run.returncode == 0, run.stdout + run.stderr
    layers = [layer for item in json.loads(run.stdout)["inputs"] for layer in item["layers"]]
    classes, probs = layers
    assert classes["crs"]["authid"] == probs["crs"]["authid"] == "EPSG:32633"
    text = json.dumps(classes)
    for name in ("other", "field", "water", "building"):
        assert f'"{name}"' in text, f"class name {name} missing in QGIS's view"
    assert "classes.qml" in text
    assert png.stat().st_size > 1000
